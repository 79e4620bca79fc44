//! Kubernetes resource quantities as numbers, enough to compare sizes (`60Gi` = `61440Mi` >
//! `60G`). Pure.

/// The value of a quantity (`<number><suffix>`: binary `Ki`…`Ei`, decimal `n u m k M G T P E`,
/// or an exponent `e3`/`E-2`), or `None` when it is not one.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp => {
            let e: i32 = exp
                .strip_prefix('e')
                .or_else(|| exp.strip_prefix('E'))?
                .parse()
                .ok()?;
            10f64.powi(e)
        }
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_compare_across_units() {
        assert_eq!(parse("60Gi"), parse("61440Mi"));
        assert!(parse("60G") < parse("60Gi"));
        assert_eq!(parse("1.5Ki"), Some(1536.0));
        assert_eq!(parse("2e3"), Some(2000.0));
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("7"), Some(7.0));
        for bad in ["", "Gi", "1Qi", "abc", "1e", "-"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

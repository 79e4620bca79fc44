//! A loaded model's share of GPU memory, from Ollama's `/api/ps` (`size_vram / size`). Below
//! one means a partial or full CPU fallback. One rounding for everyone: the percent is rounded
//! down, so 100 % means entirely on the GPU.

/// Share in GPU memory, `0.0..=1.0` (0 for an empty size).
pub fn gpu_share(size: u64, size_vram: u64) -> f64 {
    if size == 0 {
        0.0
    } else {
        (size_vram.min(size) as f64 / size as f64).clamp(0.0, 1.0)
    }
}

/// Share in GPU memory in whole percent, rounded down (100 only when all of it is there).
pub fn gpu_percent(size: u64, size_vram: u64) -> i32 {
    if size == 0 {
        return 0;
    }
    // Integer arithmetic: exact, no float rounding at the edges.
    (u128::from(size_vram.min(size)) * 100 / u128::from(size)) as i32
}

/// Whether the model is entirely in GPU memory.
pub fn fully_on_gpu(size: u64, size_vram: u64) -> bool {
    size > 0 && size_vram >= size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_percent_agree_and_round_down() {
        assert_eq!(gpu_share(1000, 250), 0.25);
        assert_eq!(gpu_percent(1000, 400), 40);
        // 99.9 % is not 100 %: a sliver on the CPU still slows every token.
        assert_eq!(gpu_percent(1000, 999), 99);
        assert!(!fully_on_gpu(1000, 999));
        assert_eq!(gpu_percent(1000, 1000), 100);
        assert!(fully_on_gpu(1000, 1000));
        assert_eq!(gpu_percent(1000, 5000), 100);
        assert_eq!(gpu_share(1000, 5000), 1.0);
        assert_eq!((gpu_share(0, 10), gpu_percent(0, 10)), (0.0, 0));
        assert_eq!(gpu_percent(u64::MAX, u64::MAX - 1), 99);
    }
}

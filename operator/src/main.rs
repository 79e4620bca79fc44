//! `learning-operator`: reconciles `LearningWorker` resources (`run`), prints the CRD (`crd`)
//! and the RBAC rules it needs (`rbac`), and renders the children of a resource offline (`render -f cr.yaml`). Thin: parse, dispatch.

use std::io::Read;

use anyhow::Context as _;
use clap::Parser;

use learning_operator::cli::{Cli, Command};
use learning_operator::desired::RenderContext;
use learning_operator::rbac::{self, Scope};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!(
                "{}",
                learning_crds::crd_yaml().context("rendering the CRD")?
            );
            Ok(())
        }
        Command::Render(args) => {
            let input = if args.file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading standard input")?;
                s
            } else {
                std::fs::read_to_string(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?
            };
            let ctx = RenderContext {
                operator_namespace: args.operator_namespace,
                models_to_pull: (!args.pull.is_empty()).then_some(args.pull),
                ..RenderContext::default()
            };
            print!(
                "{}",
                learning_operator::render::render_yaml(&input, &ctx, args.runner_image.as_deref())?
            );
            Ok(())
        }
        Command::Rbac(args) => {
            let scope = match (args.leader_election, args.keda) {
                (true, _) => Scope::OperatorNamespace,
                (false, true) => Scope::Keda,
                (false, false) => Scope::Watched,
            };
            print!(
                "{}",
                rbac::rules_yaml(scope).context("rendering the rules")?
            );
            Ok(())
        }
        Command::Run(args) => learning_operator::run::run(args),
    }
}

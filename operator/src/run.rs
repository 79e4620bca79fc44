//! `learning-operator run`: placeholder until the controller lands.

use crate::cli::RunArgs;

/// Runs the controller.
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("the controller is not built yet")
}

//! `learning-operator`: placeholder binary. The controller that reconciles `LearningWorker`
//! resources is tracked in its own issue; until then this binary only says so.

fn main() {
    eprintln!("learning-operator: the controller is not built yet (see the operator issue); nothing to run");
    std::process::exit(2);
}

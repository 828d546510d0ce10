//! `cargo xtask <command>`: the project's automation. Each command lives in its own
//! module; this file only parses flags and dispatches.

mod attack;
mod cam;
mod certify;
mod clever;
mod compare;
mod data;
mod explain;
mod load;
mod output;
mod reproduce;
mod train;
mod type1;
mod type1_args;
mod type1_strips;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Automation for the CAM robustness toolkit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one Type II attack on test images and print success, robust accuracy, norms.
    Attack(attack::AttackArgs),
    /// Render one test image's CAM and Grad-CAM side by side as PNG.
    Cam(cam::CamArgs),
    /// The CLEVER score of one test image, with every class's margin and Lipschitz estimate.
    Clever(clever::CleverArgs),
    /// Certified bounds (IBP, CROWN) on one test image's margins, and its certified radius.
    Certify(certify::CertifyArgs),
    /// Load a data source and print its counts per class and per split.
    Data(data::DataArgs),
    /// Explain one test image with one method or all ten (CAM family, gradients,
    /// occlusion), on GapCnn, the oracle or the MLP, as a PNG strip.
    Explain(explain::ExplainArgs),
    /// Compare two result directories: every artifact, up to timings (summary.json's
    /// timing fields, the report's timings section); exit status 1 when they differ.
    Compare(compare::CompareArgs),
    /// Build fixtures/mnist-mini from the full MNIST files.
    Fixtures(data::FixturesArgs),
    /// Assemble the shards of `reproduce --shard K/N` into what one process writes.
    Merge(reproduce::MergeArgs),
    /// The main job: every attack, map, metric and figure, and the report.
    Reproduce(reproduce::ReproduceArgs),
    /// Train a model and checkpoint it every epoch.
    Train(train::TrainArgs),
    /// Evaluate a checkpoint on the test split.
    Eval(train::EvalArgs),
    /// Run the Type I attack (or the class transition alone) on test images x 9 targets,
    /// or, with `--index`, draw one image's transition strips.
    Type1(type1_args::Type1Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Flush denormals on every worker and let malloc reuse freed tensors: together
    // they are worth tens of percent on the CPU hot paths (see the fastconv crate).
    fastconv::runtime::tune_cpu_runtime();
    // The work runs on one of rayon's workers, so that the passes' parallel steps do
    // not wake the pool and sleep on every call (see `on_pool_worker`).
    let result = fastconv::runtime::on_pool_worker(|| match cli.command {
        Command::Attack(args) => attack::attack(&args),
        Command::Cam(args) => cam::render(&args),
        Command::Clever(args) => clever::clever(&args),
        Command::Certify(args) => certify::certify(&args),
        Command::Compare(args) => compare::compare(&args),
        Command::Data(args) => data::print_counts(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::Fixtures(args) => data::make_fixtures(&args),
        Command::Merge(args) => reproduce::merge(&args),
        Command::Reproduce(args) => reproduce::reproduce(&args),
        Command::Train(args) => train::train(&args),
        Command::Eval(args) => train::eval(&args),
        Command::Type1(args) => type1::type1(&args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// The command a command line (without `cargo xtask`) parses to, or clap's message.
    pub fn try_parse(args: &[&str]) -> Result<super::Command, String> {
        super::Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .map(|c| c.command)
            .map_err(|e| e.to_string())
    }

    /// The command a valid command line parses to.
    pub fn parse(args: &[&str]) -> super::Command {
        try_parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// A bundled checkpoint's path (tests run in xtask/, the defaults assume the root).
    pub fn weights(file: &str) -> String {
        format!("{}/../fixtures/weights/{file}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_classifier_commands_refuse_the_svae_naming_what_they_take() {
        use crate::load::ClassifierKind;
        let commands: [&[&str]; 3] = [
            &["attack", "--attack", "fgsm"],
            &["clever", "--index", "0", "--norm", "2"],
            &["certify", "--index", "0", "--norm", "inf"],
        ];
        for args in commands {
            let with = |model: &'static str| [args, &["--model", model]].concat();
            let e = try_parse(&with("svae")).expect_err("the SVAE is not a classifier");
            assert!(
                e.contains("invalid value 'svae'")
                    && e.contains("[possible values: gapcnn, mlp, oracle, robust-oracle]"),
                "{args:?}: {e}"
            );
            let model = match parse(&with("robust-oracle")) {
                super::Command::Attack(a) => a.model,
                super::Command::Clever(a) => a.model,
                super::Command::Certify(a) => a.model,
                _ => unreachable!("{args:?} is one of the three commands"),
            };
            assert_eq!(model, ClassifierKind::RobustOracle, "{args:?}");
            assert_eq!(model.name(), "robust-oracle");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

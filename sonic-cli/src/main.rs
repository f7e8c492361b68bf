//! `sonic`: talking-head videos from a portrait and a speech recording, on the command line.
//!
//! ```text
//! cargo install --path sonic-cli
//! sonic generate --demo                  # no download needed; the video is noise
//! sonic generate --image face.png --audio speech.wav --weights checkpoints
//! sonic worker --demo &                  # the job service: a worker ...
//! sonic submit --demo --job hello --wait  # ... and a job for it (docs/service.md)
//! sonic serve --demo --api-keys keys.txt  # the HTTP API and web page (sonic api-key)
//! sonic help generate                    # every flag
//! ```
//!
//! Each subcommand lives in its own module with its arguments (`clap::Args`) and an async
//! `main`; [`Command`] lists them and `main` dispatches.
#![warn(missing_docs)]

mod demo;
mod generate;
mod input;
mod serve;
mod service;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Audio-driven talking-head video generation (Sonic) with every input and output in object
/// storage.
#[derive(Debug, Parser)]
#[command(name = "sonic", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a lip-synced talking-head video from a portrait and a speech recording.
    Generate(generate::GenerateArgs),
    /// Take jobs from the queue (NATS JetStream) and render them, until SIGINT or SIGTERM.
    Worker(service::WorkerArgs),
    /// Upload a job's inputs and put it on the queue (`--wait`: follow it to its video).
    Submit(service::SubmitArgs),
    /// Show a job's state on the job board.
    Status(service::JobArgs),
    /// Ask a queued or running job to stop.
    Cancel(service::JobArgs),
    /// List a tenant's jobs on the job board.
    Jobs(service::JobsArgs),
    /// Serve the HTTP API and the web page over the job service (docs/service.md).
    Serve(serve::ServeArgs),
    /// Make a tenant's API key for `sonic serve` (the key on stderr, its entry on stdout).
    ApiKey(serve::ApiKeyArgs),
}

impl Command {
    /// Runs the subcommand.
    async fn run(self) -> Result<(), String> {
        match self {
            Self::Generate(args) => generate::main(args).await,
            Self::Worker(args) => service::worker(args).await,
            Self::Submit(args) => service::submit(args).await,
            Self::Status(args) => service::status(args).await,
            Self::Cancel(args) => service::cancel(args).await,
            Self::Jobs(args) => service::jobs(args).await,
            Self::Serve(args) => serve::serve(args).await,
            Self::ApiKey(args) => serve::api_key(args),
        }
    }
}

/// An error and every cause under it, `outer: cause: root cause` (the library's errors keep
/// their causes as [`std::error::Error::source`] rather than in their own message).
pub(crate) fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_subcommand_is_required() {
        let err = Cli::try_parse_from(["sonic"]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        let err = Cli::try_parse_from(["sonic", "render"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }
}

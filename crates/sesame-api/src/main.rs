//! `sesame`: the passwordless login service.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sesame_api::admin::{self, ClientCommand, ConnectionCommand, KeysCommand};
use sesame_api::config::Settings;
use sesame_api::startup::Application;

/// jemalloc: many small short-lived allocations per request, on several threads (glibc's
/// malloc cost a fifth of the server's instructions on the start path).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "sesame", version, about = "Auth0-compatible passwordless login service")]
struct Cli {
    /// A TOML settings file (environment variables SESAME__SECTION__KEY override it).
    #[arg(long, global = true, env = "SESAME_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (and deliver the outbox).
    Serve {
        /// Address to bind, overriding `listen` (e.g. 0.0.0.0:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Deliver the outbox only, without serving HTTP (for deployments that run delivery apart).
    Worker,
    /// Apply pending database migrations (store = "postgres").
    Migrate,
    /// Manage applications (store = "postgres").
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage connection settings (store = "postgres").
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Manage signing keys (store = "postgres").
    #[command(subcommand)]
    Keys(KeysCommand),
    /// See, block, delete and export users (store = "postgres").
    #[command(subcommand)]
    User(sesame_api::admin_users::UserCommand),
    /// Check the settings.
    CheckConfig,
}

/// An error prints one line naming its cause (`sesame: error: starting sesame: binding …`);
/// a backtrace, when `RUST_BACKTRACE` asks for one, follows that line.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame: error: {e:#}");
            if e.backtrace().status() == std::backtrace::BacktraceStatus::Captured {
                eprintln!("\n{}", e.backtrace());
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    sesame_api::telemetry::init(settings.log_format);
    for key in Settings::unknown_env_keys(std::env::vars()) {
        tracing::warn!(key, "environment variable matches no setting");
    }
    match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            settings.check_serve()?;
            let app = Application::build(settings).await.context("starting sesame")?;
            tracing::info!(port = app.port(), "sesame listening");
            app.run_until_stopped().await?;
        }
        Command::Worker => admin::worker(&settings).await?,
        Command::Migrate => admin::migrate(&settings).await?,
        Command::Client(command) => admin::client(&settings, command).await?,
        Command::Keys(command) => admin::keys(&settings, command).await?,
        Command::Connection(command) => admin::connection(&settings, command).await?,
        Command::User(command) => sesame_api::admin_users::user(&settings, command).await?,
        Command::CheckConfig => {
            settings.check_serve()?;
            tracing::info!(issuer = settings.issuer, listen = settings.listen, store = ?settings.store, "settings are valid");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_id_starting_with_a_dash_is_read_as_the_id() {
        // Key ids are base64url thumbprints: one in 64 begins with '-'.
        for (args, wants_json) in [(&["-oX3kq"][..], false), (&["-oX3kq", "--json"][..], true)] {
            let cli = Cli::try_parse_from(["sesame", "keys", "retire"].iter().chain(args)).expect("parses");
            match cli.command {
                Command::Keys(KeysCommand::Retire { kid, json }) => {
                    assert_eq!(kid, "-oX3kq");
                    assert_eq!(json.json, wants_json);
                }
                other => panic!("parsed as {other:?}"),
            }
        }
    }
}

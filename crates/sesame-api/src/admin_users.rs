//! `sesame user …`: the operator's view of the users behind the logins, against the store.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;
use sesame_domain::{Email, Identifier, PhoneNumber, User, UserFilter, UserId, UserPatch};
use sesame_flows::users::{Actor, user_json};

use crate::admin::JsonFlag;
use crate::config::Settings;

/// `sesame user …`. A user is named by its id (`email|…`, `sms|…`), its address or its number.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users, oldest first.
    List {
        /// Only the users with this address or number.
        #[arg(long)]
        identifier: Option<String>,
        #[arg(long, default_value_t = 0)]
        page: u64,
        #[arg(long, default_value_t = 50)]
        per_page: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one user.
    Show {
        user: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Block a user: no login, no refresh, until unblocked.
    Block {
        user: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Unblock a user.
    Unblock {
        user: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a user and everything held about them (tokens, codes, messages, audit events).
    Delete {
        user: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print, as JSON, everything held about one user (a subject-access request).
    Export { user: String },
}

fn identifier_arg(raw: &str) -> anyhow::Result<Identifier> {
    if raw.contains('@') {
        Ok(Identifier::Email(Email::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?} is not a usable address: {e}"))?))
    } else {
        Ok(Identifier::Phone(
            PhoneNumber::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?} is not a usable phone number: {e}"))?,
        ))
    }
}

async fn resolve(sesame: &sesame_flows::Sesame, raw: &str) -> anyhow::Result<User> {
    let users = &sesame.ports.users;
    if raw.contains('|') {
        return users.find_by_id(&UserId(raw.to_owned())).await?.with_context(|| format!("no user {raw}"));
    }
    let page = users.list(&UserFilter::Identifier(identifier_arg(raw)?), 0, 2).await?;
    match page.users.as_slice() {
        [] => bail!("no user {raw}"),
        [one] => Ok(one.clone()),
        _ => bail!("{raw} has a user in more than one connection: name it by its id"),
    }
}

fn line(u: &User) -> String {
    let blocked = if u.blocked { "  blocked" } else { "" };
    format!(
        "{}  {}  {}  logins {}{blocked}",
        u.id.as_str(),
        u.connection.as_str(),
        u.identifier.as_str(),
        u.logins_count
    )
}

fn print(value: &Value, text: &str, json: bool) -> anyhow::Result<()> {
    crate::admin::out(&if json { value.to_string() } else { text.to_owned() })
}

/// Runs one `sesame user …` command.
///
/// # Errors
/// When the store is not durable or unreachable, or the user does not exist.
pub async fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let sesame = crate::admin::durable(settings).await?.sesame;
    let actor = Actor { client_id: Some("sesame-cli".into()), ip: None };
    match command {
        UserCommand::List { identifier, page, per_page, json } => {
            let filter = match identifier {
                Some(raw) => UserFilter::Identifier(identifier_arg(&raw)?),
                None => UserFilter::All,
            };
            let found = sesame.ports.users.list(&filter, page, per_page.clamp(1, 1000)).await?;
            let value = serde_json::json!({
                "total": found.total,
                "users": found.users.iter().map(user_json).collect::<Vec<_>>(),
            });
            let mut text: Vec<String> = found.users.iter().map(line).collect();
            text.push(format!("({} of {} users)", found.users.len(), found.total));
            print(&value, &text.join("\n"), json.json)
        }
        UserCommand::Show { user, json } => {
            let u = resolve(&sesame, &user).await?;
            print(&user_json(&u), &serde_json::to_string_pretty(&user_json(&u))?, json.json)
        }
        UserCommand::Block { user, json } => set_blocked(&sesame, &user, true, &actor, json.json).await,
        UserCommand::Unblock { user, json } => set_blocked(&sesame, &user, false, &actor, json.json).await,
        UserCommand::Delete { user, json } => {
            let u = resolve(&sesame, &user).await?;
            sesame.delete_user(&u.id, &actor).await?;
            print(&serde_json::json!({"deleted": u.id.as_str()}), &format!("deleted {}", u.id.as_str()), json.json)
        }
        UserCommand::Export { user } => {
            let u = resolve(&sesame, &user).await?;
            let export = sesame.export_user(&u.id, 10_000).await?;
            crate::admin::out(&serde_json::to_string_pretty(&export)?)
        }
    }
}

async fn set_blocked(
    sesame: &sesame_flows::Sesame,
    raw: &str,
    blocked: bool,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<()> {
    let u = resolve(sesame, raw).await?;
    let patch = UserPatch { blocked: Some(blocked), ..UserPatch::default() };
    let u = sesame.update_user(&u.id, patch, actor).await?;
    print(&user_json(&u), &line(&u), json)
}

//! A whole login through the flows on Postgres, then every row of every table is searched for
//! the secrets the user saw: none may be stored in the clear.

use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sesame_domain::{
    AppType, AuthMethod, Client, ClientId, CodePolicy, Connection, ConnectionName, GrantType, Strategy,
};
use sesame_flows::client_auth::Credentials;
use sesame_flows::exchange::OtpExchange;
use sesame_flows::start::StartRequest;
use sesame_flows::{Api, FlowSettings, OsRandom, Ports, Secrets, Sesame};
use sesame_memory::{Mailbox, MemoryRateLimiter};
use sesame_ports::{ClientStore, ConnectionStore, SystemClock};
use sesame_postgres::testing::TestDatabase;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    row: String,
}

/// Sesame's flows on the test database, with the mailbox delivering, a 12-digit email
/// connection and a public client `app` that may get refresh tokens.
async fn sesame_on(db: &TestDatabase) -> (Sesame, Arc<Mailbox>) {
    let store = Arc::new(db.store().unwrap());
    let clock = Arc::new(SystemClock);
    let mailbox = Arc::new(Mailbox::new(clock.clone()));
    let limiter = Arc::new(MemoryRateLimiter::new());
    let ports = Ports {
        clients: store.clone(),
        connections: store.clone(),
        challenges: store.clone(),
        users: store.clone(),
        outbox: store.clone(),
        grants: store.clone(),
        audit: store.clone(),
        logins: store.clone(),
        tokens: Arc::new(sesame_jwt::JwtIssuer::new(sesame_jwt::RsaSigningKey::generate().unwrap())),
        assertions: Arc::new(sesame_jwt::AssertionVerifier),
        limiter: limiter.clone(),
        floor_limiter: limiter.clone(),
        replay: limiter,
        email: mailbox.clone(),
        sms: mailbox.clone(),
        clock,
        random: Arc::new(OsRandom),
    };
    let mut settings = FlowSettings::new("https://sesame.test/");
    settings.apis.push(Api {
        identifier: "https://api.test/".into(),
        allow_offline_access: true,
        metadata_claims: None,
    });
    let sesame = Sesame::new(ports, Secrets::new(&[42u8; 32]).unwrap(), settings);
    // 12 digits: a 6-digit code could turn up by chance in hex dumps of other columns.
    let connection = Connection {
        name: ConnectionName::new("email"),
        strategy: Strategy::Email,
        policy: CodePolicy::new(12, 180).unwrap(),
        disable_signup: false,
        limits: sesame_domain::ConnectionLimits::default(),
    };
    ConnectionStore::save(&*store, &connection).await.unwrap();
    let client = Client {
        id: ClientId::new("app"),
        name: "App".into(),
        app_type: AppType::Native,
        auth_method: AuthMethod::None,
        secret_hash: None,
        connections: vec![ConnectionName::new("email")],
        callbacks: vec!["https://app.test/cb".into()],
        allowed_origins: vec![],
        grant_types: vec![GrantType::PasswordlessOtp, GrantType::Implicit, GrantType::RefreshToken],
        public_keys: vec![],
        api_scopes: Default::default(),
        trust_forwarded_for: false,
        allowed_logout_urls: vec![],
        require_pkce: true,
    };
    ClientStore::save(&*store, &client).await.unwrap();

    (sesame, mailbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_holds_a_code_link_token_or_bearer_token_in_the_clear() {
    let db = TestDatabase::new().await.expect("test database");
    let (sesame, mailbox) = sesame_on(&db).await;
    let creds = Credentials { client_id: Some("app".into()), ..Credentials::default() };
    let client = sesame.authenticate_client(&creds).await.unwrap();
    sesame
        .start(StartRequest {
            client: client.clone(),
            connection: ConnectionName::new("email"),
            email: Some("scan@example.com".into()),
            phone_number: None,
            send: None,
            auth_params: serde_json::from_str(r#"{"redirect_uri":"https://app.test/cb","state":"s"}"#).unwrap(),
            language: None,
            ip: None,
        })
        .await
        .result
        .unwrap();

    // Before delivery the sealed message waits in the outbox: scan it there too.
    let pending = all_rows(&db).await;
    sesame.deliver_due().await.unwrap();
    let sent = mailbox.list(Some("scan@example.com"));
    let text = &<[_]>::first(&sent).expect("delivered").text;
    let code =
        text.split_whitespace().find(|t| t.len() == 12 && t.bytes().all(|b| b.is_ascii_digit())).unwrap().to_owned();
    let link = text.split_whitespace().find(|t| t.starts_with("https://")).unwrap();
    let link_token = link.split("verification_code=").nth(1).unwrap().split('&').next().unwrap().to_owned();

    let tokens = sesame
        .exchange_otp(OtpExchange {
            client,
            realm: "email".into(),
            username: "scan@example.com".into(),
            otp: code.clone(),
            scope: Some("openid offline_access".into()),
            audience: None,
            ip: None,
        })
        .await
        .result
        .unwrap();
    let refresh = tokens.refresh_token.clone().expect("refresh token");
    let after = all_rows(&db).await;

    let secrets = [
        ("code", code.as_str()),
        ("link token", &link_token),
        ("access token", &tokens.access_token),
        ("refresh token", &refresh),
    ];
    for rows in [&pending, &after] {
        assert!(rows.len() > 5, "the scan sees the rows ({})", rows.len());
        for (what, secret) in secrets {
            assert!(!rows.iter().any(|r| r.contains(secret)), "a {what} is stored in the clear");
        }
    }
    assert!(after.iter().any(|r| r.contains("scan@example.com")), "the scan reads real data");
}

async fn all_rows(db: &TestDatabase) -> Vec<String> {
    let mut conn = AsyncPgConnection::establish(&db.config().url).await.unwrap();
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for t in tables {
        let got: Vec<Row> = diesel::sql_query(format!("SELECT row_to_json(t)::text AS row FROM \"{}\" t", t.name))
            .load(&mut conn)
            .await
            .unwrap();
        rows.extend(got.into_iter().map(|r| r.row));
    }
    rows
}

/// A login, a refresh token, metadata and a code still waiting, then the user is deleted: no
/// row of any table names the user's id or address any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_leaves_no_row_behind() {
    let db = TestDatabase::new().await.expect("test database");
    let (sesame, mailbox) = sesame_on(&db).await;
    let email = "forget-me@example.com";
    let creds = Credentials { client_id: Some("app".into()), ..Credentials::default() };
    let client = sesame.authenticate_client(&creds).await.unwrap();
    let start = || StartRequest {
        client: client.clone(),
        connection: ConnectionName::new("email"),
        email: Some(email.into()),
        phone_number: None,
        send: None,
        auth_params: sesame_domain::AuthParams::default(),
        language: None,
        ip: None,
    };
    sesame.start(start()).await.result.unwrap();
    sesame.deliver_due().await.unwrap();
    let sent = mailbox.list(Some(email));
    let text = &<[_]>::first(&sent).expect("delivered").text;
    let code =
        text.split_whitespace().find(|t| t.len() == 12 && t.bytes().all(|b| b.is_ascii_digit())).unwrap().to_owned();
    let tokens = sesame
        .exchange_otp(OtpExchange {
            client: client.clone(),
            realm: "email".into(),
            username: email.into(),
            otp: code,
            scope: Some("openid offline_access".into()),
            audience: None,
            ip: None,
        })
        .await
        .result
        .unwrap();
    let refresh = tokens.refresh_token.expect("refresh token");
    sesame.refresh(&client, &refresh).await.unwrap();
    let user = sesame_ports::UserStore::find(
        &*sesame.ports.users,
        &ConnectionName::new("email"),
        &sesame_domain::Identifier::Email(sesame_domain::Email::parse(email).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let patch = sesame_domain::UserPatch {
        user_metadata: Some(sesame_domain::MetadataPatch::from_object(
            serde_json::json!({"address": "1 Main St"}).as_object().unwrap(),
        )),
        ..sesame_domain::UserPatch::default()
    };
    let actor = sesame_flows::users::Actor::default();
    sesame.update_user(&user.id, patch, &actor).await.unwrap();
    // A second start, not delivered: a challenge and an outbox row with the address.
    sesame.start(start()).await.result.unwrap();

    let local_id = user.id.local().to_owned();
    let before = all_rows(&db).await;
    for needle in [email, user.id.as_str(), local_id.as_str(), "1 Main St"] {
        assert!(before.iter().any(|r| r.contains(needle)), "the scan sees {needle} before the deletion");
    }
    sesame.delete_user(&user.id, &actor).await.unwrap();
    let after = all_rows(&db).await;
    assert!(after.len() > 3, "the scan sees the rows that remain ({})", after.len());
    for needle in [email, user.id.as_str(), local_id.as_str(), "1 Main St"] {
        let left: Vec<&String> = after.iter().filter(|r| r.contains(needle)).collect();
        assert!(left.is_empty(), "{needle} is still stored: {left:?}");
    }
}

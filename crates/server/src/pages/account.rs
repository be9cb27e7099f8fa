//! Home, sign-up, sign-in/out, the account page, password reset and invitations.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, get, post, web};
use serde::Deserialize;
use silo_accounts::signups::SignupRequest;
use silo_accounts::throttle::Throttle;
use silo_accounts::{Role, TokenScope, TokenSpec};
use silo_core::{TenantRef, TenantSlug};
use silo_jobs::Enqueued;

use super::{FormBack, Page, PageResult, flash_outcome_with, form_outcome, link_page, workspace_form_flash};
use crate::csrf::CsrfForm;
use crate::devices;
use crate::error::{Failure, PASSWORD_THROTTLED, PageError};
use crate::hosts::WorkspaceHost;
use crate::redirects::{safe_next, see_other, see_other_with_flash, see_other_with_form_error};
use crate::request::{client_addr, state};
use crate::sessions::{SignedIn, current_session, session_cookie, session_secret, sign_out_browser};

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home_page)
        .service(signup_form)
        .service(signup_page)
        .service(confirm_form)
        .service(confirm_page)
        .service(login_form)
        .service(login_page)
        .service(logout_page)
        .service(account_page)
        .service(update_profile)
        .service(change_password)
        .service(revoke_all_sessions)
        .service(revoke_session)
        .service(create_token)
        .service(revoke_token)
        .service(export_my_data)
        .service(delete_my_account)
        .service(forgot_form)
        .service(forgot_page)
        .service(reset_form)
        .service(reset_page)
        .service(invitation_page)
        .service(accept_invitation)
        .service(signup_and_accept)
        .service(invitation_signup_again)
        .service(tokens_again)
        .service(undelete_workspace)
        .service(new_workspace_form)
        .service(create_workspace);
}

/// A form with no fields but its token (sign out, revoke, …).
#[derive(Deserialize)]
pub struct NoFields {}

#[get("/")]
async fn home_page(req: HttpRequest) -> PageResult {
    let mut page = Page::new("home.html");
    if let Some(session) = current_session(&req).await? {
        page = page
            .with("workspaces", &state(&req).accounts().memberships().workspaces_of(&session.user_id).await?);
    }
    page.render(&req).await
}

/// A form the server renders itself, shown again after a refusal (422): what was typed, and
/// the refusal next to its field.
fn refused_form(template: &'static str, form: &impl serde::Serialize, e: &silo_accounts::Error) -> Page {
    Page::new(template)
        .with("form", form)
        .with("flash", &workspace_form_flash(e))
        .status(StatusCode::UNPROCESSABLE_ENTITY)
}

#[get("/signup")]
async fn signup_form(req: HttpRequest) -> PageResult {
    Page::new("signup.html").render(&req).await
}

#[derive(Deserialize, serde::Serialize)]
struct SignupForm {
    email: String,
    #[serde(default)]
    name: String,
    #[serde(skip_serializing)]
    password: String,
    #[serde(default)]
    workspace: String,
    /// Empty: suggested from the workspace's name.
    #[serde(default)]
    slug: String,
}

/// Counts an attempt against `throttle` (per address and per client) or answers 429 with
/// `message` and when to retry.
fn throttled(throttle: &Throttle, key: &str, client: &str, message: &str) -> Result<(), PageError> {
    throttle.attempt(key, client, false).map_err(|retry_after| {
        // Debug, not warn: under a guessing attack a line per refusal would flood the log.
        tracing::debug!(client, message, "throttled");
        let failure = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("{message} Try again in {}.", wait_in_words(retry_after)),
        );
        PageError(failure.retry_after(retry_after))
    })
}

/// "12 seconds", "3 minutes" (rounded up).
fn wait_in_words(wait: std::time::Duration) -> String {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    match seconds {
        0..=1 => "a second".to_owned(),
        2..=119 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}

/// Counts a password check of the signed-in account against the password throttle (the
/// password asked again to change it or to delete the account), or answers 429 with a link to
/// the reset.
async fn password_check_allowed(req: &HttpRequest, email: &str) -> Result<(), PageError> {
    // Not as a known device: here the browser already holds a session (which may have been
    // taken); what is asked is the password, and it gets an unknown client's guesses.
    state(req).throttle.attempt(email, &client_addr(req), false).map_err(|retry_after| {
        let failure = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            PASSWORD_THROTTLED,
            format!("Too many wrong passwords. Try again in {}.", wait_in_words(retry_after)),
        );
        PageError(failure.retry_after(retry_after))
    })
}

/// Starts a sign-up: the same answer ("check your email") whether or not the address has an
/// account; the account and workspace are created from the emailed link.
#[post("/signup")]
async fn signup_page(req: HttpRequest, CsrfForm(form): CsrfForm<SignupForm>) -> PageResult {
    let app = state(&req);
    let client = client_addr(&req);
    throttled(&app.signup_throttle, &form.email, &client, "Too many sign-ups from here.")?;
    let request = SignupRequest {
        email: form.email.clone(),
        name: form.name.clone(),
        password: form.password.clone(),
        workspace_name: form.workspace.clone(),
        slug: form.slug.clone(),
    };
    match app.accounts().signups().start(&request, app.links.origin()).await {
        Ok(()) => {
            let email = silo_accounts::Email::parse(&form.email).map(|e| e.to_string()).unwrap_or_default();
            Page::new("signup.html")
                .with("sent", &email)
                .with("log_delivery", &app.accounts().settings().smtp.host.is_none())
                .render(&req)
                .await
        }
        Err(e) if e.is_user_error() => {
            // Refused for its input, before any hashing or email: it does not count.
            app.signup_throttle.refund(&form.email, &client);
            refused_form("signup.html", &form, &e).render(&req).await
        }
        Err(e) => Err(e.into()),
    }
}

#[get("/signup/confirm/{token}")]
async fn confirm_form(req: HttpRequest, token: web::Path<String>) -> PageResult {
    let pending = state(&req).accounts().signups().pending(&token).await?;
    link_page("signup_confirm.html", "pending", &pending, &token, None).render(&req).await
}

#[derive(Deserialize)]
struct ConfirmForm {
    workspace: String,
    slug: String,
}

/// Creates the account and its workspace from a confirmation link, then signs in.
#[post("/signup/confirm/{token}")]
async fn confirm_page(
    req: HttpRequest,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let accounts = state(&req).accounts();
    match accounts.signups().confirm(&token, &form.workspace, &form.slug).await {
        Ok((user, tenant)) => {
            // The browser that confirmed the address is the owner's: a known device.
            let mut response = start_session(&req, &user.id, &format!("/w/{}/", tenant.slug)).await?;
            devices::remember(&req, &mut response, &user.email).await;
            Ok(response)
        }
        Err(e) if e.is_user_error() => {
            let pending = accounts.signups().pending(&token).await?.map(|mut pending| {
                // Show what was just tried, so a taken address can be changed.
                pending.workspace_name = form.workspace.clone();
                pending.slug = form.slug.clone();
                pending
            });
            link_page("signup_confirm.html", "pending", &pending, &token, Some(&e.to_string()))
                .with("flash", &workspace_form_flash(&e))
                .render(&req)
                .await
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts a session (a new id every time) and redirects.
async fn start_session(req: &HttpRequest, user_id: &str, location: &str) -> PageResult {
    let app = state(req);
    let user_agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let new = app
        .accounts()
        .sessions()
        .create(user_id, user_agent, &client_addr(req), app.session_ttl(), None)
        .await?;
    let mut response = see_other(location);
    response.add_cookie(&session_cookie(req, &new.secret)).map_err(|e| Failure::invalid(e.to_string()))?;
    Ok(response)
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

#[get("/login")]
async fn login_form(req: HttpRequest, query: web::Query<NextQuery>) -> PageResult {
    Page::new("login.html").with("next", &safe_next(query.next.as_deref())).render(&req).await
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// Signs in. Unknown email and wrong password get the same answer (and the same work). Each
/// attempt is counted per account and per client *before* the password is checked, so too
/// many — even all at once — get 429 without a hash; a correct password refunds its count.
#[post("/login")]
async fn login_page(req: HttpRequest, CsrfForm(form): CsrfForm<LoginForm>) -> PageResult {
    let app = state(&req);
    let client = client_addr(&req);
    let next = safe_next(form.next.as_deref());
    let known = devices::is_known(&req, &form.email).await;
    if let Err(retry_after) = app.throttle.attempt(&form.email, &client, known) {
        // Debug, not warn: under a guessing attack a line per refusal would flood the log.
        tracing::debug!(client, "sign-in throttled");
        let message = format!("Too many sign-in attempts. Try again in {}.", wait_in_words(retry_after));
        let mut response = Page::new("login.html")
            .with("next", &next)
            .with("email", &form.email)
            .with("throttled", &message)
            .status(StatusCode::TOO_MANY_REQUESTS)
            .render(&req)
            .await?;
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(seconds.max(1)),
        );
        return Ok(response);
    }
    match app.accounts().users().authenticate(&form.email, &form.password).await? {
        Some(user) => {
            app.throttle.succeeded(&form.email, &client);
            // Without a destination, an operator lands on the console.
            let next = if next == "/" && app.accounts().users().is_operator(&user.id).await? {
                "/admin".to_owned()
            } else {
                next
            };
            let mut response = start_session(&req, &user.id, &next).await?;
            devices::remember(&req, &mut response, &user.email).await;
            Ok(response)
        }
        None => {
            Page::new("login.html")
                .with("next", &next)
                .with("email", &form.email)
                .with("error", &"That email and password do not match an account.")
                .status(StatusCode::UNAUTHORIZED)
                .render(&req)
                .await
        }
    }
}

/// Signs out this session and its family (the main host's and the workspace hosts').
#[post("/logout")]
async fn logout_page(req: HttpRequest, _form: CsrfForm<NoFields>) -> PageResult {
    if let Some(secret) = session_secret(&req) {
        state(&req).accounts().sessions().revoke(&secret).await?;
    }
    let on_workspace_host = req.extensions().get::<WorkspaceHost>().is_some();
    let mut response = if on_workspace_host {
        see_other(&state(&req).links.main("/login"))
    } else {
        see_other_with_flash("/login", "ok", "You are signed out.")
    };
    sign_out_browser(&mut response);
    Ok(response)
}

async fn account_view(req: &HttpRequest, signed_in: &SignedIn) -> Result<Page, PageError> {
    let accounts = state(req).accounts();
    let user_id = &signed_in.session.user_id;
    Ok(Page::new("account.html")
        .with("sessions", &{
            // Each session's browser and system in words beside the raw agent string.
            let sessions = accounts.sessions().of_user(user_id).await?;
            sessions
                .iter()
                .map(|s| {
                    let mut value = serde_json::to_value(s).unwrap_or_default();
                    value["device"] = crate::agent::describe(&s.user_agent).into();
                    value
                })
                .collect::<Vec<_>>()
        })
        .with("current_session", &signed_in.session.id)
        .with("tokens", &accounts.tokens().of_user(user_id).await?)
        .with("workspaces", &accounts.memberships().workspaces_of(user_id).await?)
        .with("exports", &accounts.subjects().exports_of(&signed_in.session.email).await?))
}

#[get("/account")]
async fn account_page(req: HttpRequest, signed_in: SignedIn) -> PageResult {
    account_view(&req, &signed_in).await?.render(&req).await
}

#[derive(Deserialize)]
struct ProfileForm {
    display_name: String,
}

#[post("/account/profile")]
async fn update_profile(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<ProfileForm>) -> PageResult {
    let saved = state(&req).accounts().users().update_profile(&me.session.user_id, &form.display_name).await;
    let back = FormBack {
        back: "/account",
        fields: &["display_name"],
        typed: vec![("display_name", &form.display_name)],
    };
    form_outcome(back, saved, |_| Ok(see_other_with_flash("/account", "ok", "Profile saved.")))
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

#[post("/account/password")]
async fn change_password(
    req: HttpRequest,
    me: SignedIn,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> PageResult {
    password_check_allowed(&req, &me.session.email).await?;
    let app = state(&req);
    let result = app
        .accounts()
        .users()
        .change_password(&me.session.user_id, &form.current, &form.new, Some(&me.session.id))
        .await;
    if result.is_ok() {
        app.throttle.succeeded(&me.session.email, &client_addr(&req));
    }
    // Never a password put back in a form.
    let back = FormBack { back: "/account", fields: &["current_password", "password"], typed: Vec::new() };
    form_outcome(back, result, |_| {
        Ok(see_other_with_flash("/account", "ok", "Password changed; your other sessions are signed out."))
    })
}

#[post("/account/sessions/revoke-all")]
async fn revoke_all_sessions(req: HttpRequest, me: SignedIn, _form: CsrfForm<NoFields>) -> PageResult {
    state(&req).accounts().sessions().revoke_all(&me.session.user_id).await?;
    let mut response = see_other_with_flash("/login", "ok", "You are signed out everywhere.");
    sign_out_browser(&mut response);
    Ok(response)
}

#[post("/account/sessions/{id}/revoke")]
async fn revoke_session(
    req: HttpRequest,
    me: SignedIn,
    id: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    state(&req).accounts().sessions().revoke_id(&me.session.user_id, &id).await?;
    Ok(see_other_with_flash("/account", "ok", "That session is signed out."))
}

#[derive(Deserialize)]
struct TokenForm {
    /// What the token is for.
    #[serde(default)]
    name: String,
    /// `read_only` or `read_write`.
    #[serde(default)]
    access: String,
    workspace: String,
    /// Days until the token expires; empty: never.
    #[serde(default)]
    expires_days: String,
}

/// Creates a personal token for one workspace and shows it once.
#[post("/account/tokens")]
async fn create_token(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<TokenForm>) -> PageResult {
    let accounts = state(&req).accounts();
    let slug = TenantSlug::parse(&form.workspace).map_err(|_| Failure::not_found())?;
    let lifetime = match form.expires_days.trim() {
        "" => None,
        days => match days.parse::<u64>() {
            Ok(days @ 1..=3650) => Some(std::time::Duration::from_secs(days * 86_400)),
            _ => {
                let message = "Choose when the token expires (1 to 3650 days), or never.";
                return Ok(see_other_with_flash("/account", "error", message));
            }
        },
    };
    let scope = TokenScope::Personal(TenantRef::Slug(slug));
    let typed = [("name", form.name.as_str()), ("access", &form.access), ("workspace", &form.workspace)];
    // An access the form does not offer is refused, never read as read-and-write.
    let read_only = match form.access.as_str() {
        "read_only" => true,
        "read_write" | "" => false,
        _ => {
            let message = "Choose read only, or read and write.";
            return Ok(see_other_with_form_error("/account", Some("token-access"), message, &typed));
        }
    };
    if silo_core::text::trim(&form.name).is_empty() {
        let message = "Give the token a name: what it is for, e.g. deploy script.";
        return Ok(see_other_with_form_error("/account", Some("token-name"), message, &typed));
    }
    let spec = TokenSpec { name: form.name.clone(), lifetime, read_only };
    let token = match accounts.tokens().issue_with(&me.session.email, scope, &me.session.email, &spec).await {
        Ok(token) => token,
        Err(silo_accounts::Error::Invalid { field: "name", message }) => {
            return Ok(see_other_with_form_error("/account", Some("token-name"), &message, &typed));
        }
        Err(silo_accounts::Error::LimitReached(message)) => {
            return Ok(see_other_with_form_error("/account", None, &message, &typed));
        }
        Err(e) if e.is_user_error() => {
            let message = "You can only create tokens for your own workspaces.";
            return Ok(see_other_with_form_error("/account", None, message, &typed));
        }
        Err(e) => return Err(e.into()),
    };
    account_view(&req, &me).await?.with("new_token", &token).render(&req).await
}

#[post("/account/tokens/{id}/revoke")]
async fn revoke_token(
    req: HttpRequest,
    me: SignedIn,
    id: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    state(&req).accounts().tokens().revoke(&me.session.user_id, &id, &me.session.email).await?;
    Ok(see_other_with_flash("/account", "ok", "Token revoked."))
}

/// "Download my data": the same subject export an operator can start; its link appears on
/// the account page when ready.
#[post("/account/export")]
async fn export_my_data(req: HttpRequest, me: SignedIn, _form: CsrfForm<NoFields>) -> PageResult {
    let email = me.session.email.as_str();
    let started = state(&req).accounts().subjects().start_export(email, email).await;
    flash_outcome_with("/account", started, |started| {
        let message = match started {
            Enqueued::New(_) => {
                "We are gathering your data; its download link appears below in a moment (reload the page)."
            }
            Enqueued::InProgress(_) => {
                "Your data is already being gathered; its download link appears below in a moment (reload the page)."
            }
        };
        Ok(see_other_with_flash("/account", "ok", message))
    })
}

#[derive(Deserialize)]
struct DeleteAccountForm {
    password: String,
}

/// "Delete my account": password asked again; signs out and starts the erasure.
#[post("/account/delete")]
async fn delete_my_account(
    req: HttpRequest,
    me: SignedIn,
    CsrfForm(form): CsrfForm<DeleteAccountForm>,
) -> PageResult {
    password_check_allowed(&req, &me.session.email).await?;
    let closed = state(&req).accounts().subjects().close_account(&me.session.user_id, &form.password).await;
    flash_outcome_with("/account", closed, |_| {
        let message = "Your account is being deleted, with everything Silo holds about you.";
        let mut response = see_other_with_flash("/login", "ok", message);
        sign_out_browser(&mut response);
        Ok(response)
    })
}

#[get("/password/forgot")]
async fn forgot_form(req: HttpRequest) -> PageResult {
    Page::new("password_forgot.html").render(&req).await
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
}

/// Always the same answer, whether or not the account exists.
#[post("/password/forgot")]
async fn forgot_page(req: HttpRequest, CsrfForm(form): CsrfForm<EmailForm>) -> PageResult {
    let app = state(&req);
    let client = client_addr(&req);
    // Each request sends an email: a few per account and client, then silently none.
    if app.reset_throttle.attempt(&form.email, &client, false).is_ok() {
        let base = app.links.origin();
        app.accounts()
            .users()
            .request_password_reset(&form.email, base, std::time::Duration::from_secs(3600))
            .await?;
    }
    Page::new("password_forgot.html").with("sent", &true).render(&req).await
}

#[get("/password/reset/{token}")]
async fn reset_form(req: HttpRequest, token: web::Path<String>) -> PageResult {
    let valid = state(&req).accounts().users().password_reset_valid(&token).await?;
    Page::new("password_reset.html").with("valid", &valid).with("token", &token.as_str()).render(&req).await
}

#[derive(Deserialize)]
struct NewPasswordForm {
    password: String,
    /// The "also revoke my API tokens" box (absent when unticked).
    revoke_tokens: Option<String>,
}

#[post("/password/reset/{token}")]
async fn reset_page(
    req: HttpRequest,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<NewPasswordForm>,
) -> PageResult {
    let revoke_tokens = form.revoke_tokens.is_some();
    match state(&req).accounts().users().reset_password(&token, &form.password, revoke_tokens).await {
        Ok(user) => {
            state(&req).throttle.succeeded(&user.email, &client_addr(&req));
            let message = if revoke_tokens {
                "Password changed and your API tokens revoked. Sign in with the new password."
            } else {
                "Password changed. Sign in with the new one."
            };
            Ok(see_other_with_flash("/login", "ok", message))
        }
        Err(e) if e.is_user_error() => {
            Page::new("password_reset.html")
                .with("valid", &true)
                .with("token", &token.as_str())
                .with("error", &e.to_string())
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .render(&req)
                .await
        }
        Err(e) => Err(e.into()),
    }
}

#[get("/invitations/{token}")]
async fn invitation_page(req: HttpRequest, token: web::Path<String>) -> PageResult {
    let invitation = state(&req).accounts().invitations().find(&token).await?;
    link_page("invitation.html", "invitation", &invitation, &token, None).render(&req).await
}

async fn invitation_error(req: &HttpRequest, token: &str, message: &str) -> PageResult {
    let invitation = state(req).accounts().invitations().find(token).await?;
    link_page("invitation.html", "invitation", &invitation, token, Some(message)).render(req).await
}

#[post("/invitations/{token}/accept")]
async fn accept_invitation(
    req: HttpRequest,
    me: SignedIn,
    token: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let accounts = state(&req).accounts();
    let user = accounts.users().by_id(&me.session.user_id).await?;
    match accounts.invitations().accept(&token, &user).await {
        Ok(slug) => Ok(see_other_with_flash(&format!("/w/{slug}/"), "ok", "Welcome to the workspace.")),
        Err(e) if e.is_user_error() => invitation_error(&req, &token, &e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct InviteeForm {
    #[serde(default)]
    name: String,
    password: String,
}

/// A new account for the invited address, then the invitation accepted, then signed in.
#[post("/invitations/{token}/signup")]
async fn signup_and_accept(
    req: HttpRequest,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<InviteeForm>,
) -> PageResult {
    let app = state(&req);
    let accounts = app.accounts();
    let Some(invitation) = accounts.invitations().find(&token).await? else {
        return invitation_error(&req, &token, "This invitation is no longer valid.").await;
    };
    throttled(&app.signup_throttle, &invitation.email, &client_addr(&req), "Too many sign-ups from here.")?;
    if accounts.users().by_email(&invitation.email).await.is_ok() {
        return invitation_error(&req, &token, "An account with this address exists: sign in to accept.")
            .await;
    }
    let user = match accounts
        .users()
        .create(&invitation.email, &form.password, Some(&form.name), "invitation")
        .await
    {
        Ok(user) => user,
        // Next to its field, the name kept (never the password).
        Err(e) if e.is_user_error() => {
            return link_page("invitation.html", "invitation", &Some(invitation), &token, None)
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .with("flash", &workspace_form_flash(&e))
                .with("typed_name", &form.name)
                .render(&req)
                .await;
        }
        Err(e) => return Err(e.into()),
    };
    let slug = accounts.invitations().accept(&token, &user).await?;
    start_session(&req, &user.id, &format!("/w/{slug}/")).await
}

/// The address the token form posts to, opened again (a reload of the page that showed the
/// new token): the account page — the token is never shown twice.
#[get("/account/tokens")]
async fn tokens_again() -> PageResult {
    Ok(see_other("/account"))
}

/// The address the sign-up form of an invitation posts to, opened again (a reload, a copied
/// address): the invitation itself.
#[get("/invitations/{token}/signup")]
async fn invitation_signup_again(token: web::Path<String>) -> PageResult {
    Ok(see_other(&format!("/invitations/{}", crate::redirects::urlencode(&token))))
}

#[get("/workspaces/new")]
async fn new_workspace_form(req: HttpRequest, _me: SignedIn) -> PageResult {
    Page::new("workspace_new.html").render(&req).await
}

#[derive(Deserialize, serde::Serialize)]
struct NewWorkspaceForm {
    name: String,
    /// Empty: suggested from the name.
    #[serde(default)]
    slug: String,
}

/// A signed-in account creates another workspace, as its owner, and lands in it.
#[post("/workspaces")]
async fn create_workspace(
    req: HttpRequest,
    me: SignedIn,
    CsrfForm(form): CsrfForm<NewWorkspaceForm>,
) -> PageResult {
    let accounts = state(&req).accounts();
    let user = accounts.users().by_email(&me.session.email).await?;
    match accounts.memberships().found(&user, &form.name, &form.slug).await {
        Ok(tenant) => Ok(see_other_with_flash(
            &format!("/w/{}/", tenant.slug),
            "ok",
            &format!("Workspace created at /w/{}/.", tenant.slug),
        )),
        Err(e) if e.is_user_error() && !matches!(e, silo_accounts::Error::Forbidden(_)) => {
            refused_form("workspace_new.html", &form, &e).render(&req).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Brings back a workspace its owner deleted, within the grace period.
#[post("/workspaces/{slug}/undelete")]
async fn undelete_workspace(
    req: HttpRequest,
    me: SignedIn,
    slug: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let app = state(&req);
    let reference: TenantRef = slug.parse().map_err(|_| Failure::not_found())?;
    // Only its owners, and they see the same 404 as anyone for a workspace they do not own.
    let role = app.accounts().memberships().role_in(&reference, &me.session.user_id).await;
    // A held restore is the operators' until they release it: nothing its members can act on.
    let held = app.tenancy().tenant(&reference).await.map(|t| t.held).unwrap_or(true);
    if !matches!(role, Ok(Some(Role::Owner))) || held {
        return Err(Failure::not_found().into());
    }
    let restored = app.tenancy().tenants().undelete_by_owner(&reference, &me.session.email).await;
    flash_outcome_with("/", restored, |tenant| {
        Ok(see_other_with_flash(&format!("/w/{}/", tenant.slug), "ok", "The workspace is back."))
    })
}

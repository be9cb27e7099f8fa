//! Home, sign-up, sign-in/out, the account page, password reset and invitations.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use silo_tenancy::accounts::{Role, TokenScope};
use silo_tenancy::{CreateTenant, Error, TenantRef, TenantSlug};

use super::{Page, flash_outcome};
use crate::server::auth::{
    CsrfForm, SignedIn, clear_session_cookies, client_addr, current_session, safe_next, see_other,
    see_other_with_flash, session_cookie, state,
};
use crate::server::error::{Failure, PageError};

type PageResult = Result<HttpResponse, PageError>;

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home_page)
        .service(signup_form)
        .service(signup_page)
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
        .service(forgot_form)
        .service(forgot_page)
        .service(reset_form)
        .service(reset_page)
        .service(invitation_page)
        .service(accept_invitation)
        .service(signup_and_accept);
}

/// A form with no fields but its token (sign out, revoke, …).
#[derive(Deserialize)]
pub struct NoFields {}

#[get("/")]
async fn home_page(req: HttpRequest) -> PageResult {
    let mut page = Page::new("home.html");
    if let Some(session) = current_session(&req).await? {
        page = page.with("workspaces", &state(&req).tenancy.workspaces_of(&session.user_id).await?);
    }
    page.render(&req).await
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
    workspace: String,
    slug: String,
}

/// Creates the account and provisions its workspace in one flow; either both exist afterwards
/// or neither does.
#[post("/signup")]
async fn signup_page(req: HttpRequest, CsrfForm(form): CsrfForm<SignupForm>) -> PageResult {
    let tenancy = &state(&req).tenancy;
    let again = |message: String| {
        Page::new("signup.html")
            .with("form", &form)
            .with("error", &message)
            .status(StatusCode::UNPROCESSABLE_ENTITY)
    };
    let slug = match TenantSlug::parse(form.slug.trim()) {
        Ok(slug) => slug,
        Err(e) => return again(format!("That workspace address cannot be used: {e}.")).render(&req).await,
    };
    if tenancy.control().slug_taken(&slug).await? {
        return again(format!("The address `{slug}` is already taken.")).render(&req).await;
    }
    if tenancy.user(&form.email).await.is_ok() {
        let message = "That email cannot be used to sign up. If it is yours, sign in (or reset your password) and create the workspace from there.";
        return again(message.to_owned()).render(&req).await;
    }
    let user = match tenancy.create_user(&form.email, &form.password, Some(&form.name), "signup").await {
        Ok(user) => user,
        Err(e) if e.is_user_error() => return again(e.to_string()).render(&req).await,
        Err(e) => return Err(e.into()),
    };
    let request = CreateTenant {
        slug: slug.to_string(),
        name: Some(form.workspace.clone()),
        ..CreateTenant::default()
    };
    let created = async {
        let tenant = tenancy.create(request, &user.email).await?;
        tenancy.add_member(&TenantRef::Id(tenant.id), &user.email, Role::Owner, &user.email).await?;
        Ok::<_, Error>(tenant)
    }
    .await;
    let tenant = match created {
        Ok(tenant) => tenant,
        Err(e) => {
            // Undo the account so the visitor can simply try again.
            if let Err(cleanup) = tenancy.delete_user(&user.id).await {
                tracing::error!(error = %cleanup, "removing the account of a failed sign-up failed");
            }
            if e.is_user_error() {
                return again(e.to_string()).render(&req).await;
            }
            return Err(e.into());
        }
    };
    start_session(&req, &user.id, &format!("/w/{}/", tenant.slug)).await
}

/// Starts a session (a new id every time) and redirects.
async fn start_session(req: &HttpRequest, user_id: &str, location: &str) -> PageResult {
    let app = state(req);
    let user_agent = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let new = app.tenancy.create_session(user_id, user_agent, &client_addr(req), app.session_ttl()).await?;
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

/// Signs in. Unknown email and wrong password get the same answer (and the same work); too
/// many failures per account or per client get 429 before any password is checked.
#[post("/login")]
async fn login_page(req: HttpRequest, CsrfForm(form): CsrfForm<LoginForm>) -> PageResult {
    let app = state(&req);
    let client = client_addr(&req);
    let next = safe_next(form.next.as_deref());
    if let Err(retry_after) = app.throttle.check(&form.email, &client) {
        tracing::warn!(client, "login throttled");
        let minutes = retry_after.as_secs().div_ceil(60);
        let failure = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("Too many failed sign-ins. Try again in {minutes} minute(s), or reset your password."),
        );
        return Err(PageError(failure.retry_after(retry_after.as_secs())));
    }
    match app.tenancy.authenticate(&form.email, &form.password).await? {
        Some(user) => {
            app.throttle.succeeded(&form.email);
            start_session(&req, &user.id, &next).await
        }
        None => {
            app.throttle.failed(&form.email, &client);
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

#[post("/logout")]
async fn logout_page(req: HttpRequest, _form: CsrfForm<NoFields>) -> PageResult {
    for cookie in ["__Host-silo_session", "silo_session"] {
        if let Some(secret) = req.cookie(cookie) {
            state(&req).tenancy.revoke_session(secret.value()).await?;
        }
    }
    let mut response = see_other_with_flash("/login", "ok", "You are signed out.");
    for cookie in clear_session_cookies() {
        let _ = response.add_cookie(&cookie);
    }
    Ok(response)
}

async fn account_view(req: &HttpRequest, signed_in: &SignedIn) -> Result<Page, PageError> {
    let tenancy = &state(req).tenancy;
    let user_id = &signed_in.session.user_id;
    Ok(Page::new("account.html")
        .with("sessions", &tenancy.sessions_of(user_id).await?)
        .with("current_session", &signed_in.session.id)
        .with("tokens", &tenancy.tokens_of(user_id).await?)
        .with("workspaces", &tenancy.workspaces_of(user_id).await?))
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
    flash_outcome(
        "/account",
        state(&req).tenancy.update_profile(&me.session.user_id, &form.display_name).await,
        "Profile saved.",
    )
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
    let tenancy = &state(&req).tenancy;
    let result =
        tenancy.change_password(&me.session.user_id, &form.current, &form.new, Some(&me.session.id)).await;
    match result {
        Ok(()) => Ok(see_other_with_flash(
            "/account",
            "ok",
            "Password changed; your other sessions are signed out.",
        )),
        Err(e) if e.is_user_error() => Ok(see_other_with_flash("/account", "error", &e.to_string())),
        Err(e) => Err(e.into()),
    }
}

#[post("/account/sessions/revoke-all")]
async fn revoke_all_sessions(req: HttpRequest, me: SignedIn, _form: CsrfForm<NoFields>) -> PageResult {
    state(&req).tenancy.revoke_all_sessions(&me.session.user_id).await?;
    let mut response = see_other_with_flash("/login", "ok", "You are signed out everywhere.");
    for cookie in clear_session_cookies() {
        let _ = response.add_cookie(&cookie);
    }
    Ok(response)
}

#[post("/account/sessions/{id}/revoke")]
async fn revoke_session(
    req: HttpRequest,
    me: SignedIn,
    id: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    state(&req).tenancy.revoke_session_id(&me.session.user_id, &id).await?;
    Ok(see_other_with_flash("/account", "ok", "That session is signed out."))
}

#[derive(Deserialize)]
struct TokenForm {
    workspace: String,
}

/// Creates a personal token for one workspace and shows it once.
#[post("/account/tokens")]
async fn create_token(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<TokenForm>) -> PageResult {
    let tenancy = &state(&req).tenancy;
    let slug = TenantSlug::parse(&form.workspace).map_err(|_| Failure::not_found())?;
    let token = match tenancy
        .issue_token(&me.session.email, TokenScope::Personal(TenantRef::Slug(slug)), &me.session.email)
        .await
    {
        Ok(token) => token,
        Err(e) if e.is_user_error() => {
            return Ok(see_other_with_flash(
                "/account",
                "error",
                "You can only create tokens for your own workspaces.",
            ));
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
    state(&req).tenancy.revoke_token(&me.session.user_id, &id, &me.session.email).await?;
    Ok(see_other_with_flash("/account", "ok", "Token revoked."))
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
    if app.reset_throttle.check(&form.email, &client).is_ok() {
        app.reset_throttle.failed(&form.email, &client);
        let base = crate::server::auth::base_url(&req);
        app.tenancy.request_password_reset(&form.email, &base, std::time::Duration::from_secs(3600)).await?;
    }
    Page::new("password_forgot.html").with("sent", &true).render(&req).await
}

#[get("/password/reset/{token}")]
async fn reset_form(req: HttpRequest, token: web::Path<String>) -> PageResult {
    let valid = state(&req).tenancy.password_reset_valid(&token).await?;
    Page::new("password_reset.html").with("valid", &valid).with("token", &token.as_str()).render(&req).await
}

#[derive(Deserialize)]
struct NewPasswordForm {
    password: String,
}

#[post("/password/reset/{token}")]
async fn reset_page(
    req: HttpRequest,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<NewPasswordForm>,
) -> PageResult {
    match state(&req).tenancy.reset_password(&token, &form.password).await {
        Ok(user) => {
            state(&req).throttle.succeeded(&user.email);
            Ok(see_other_with_flash("/login", "ok", "Password changed. Sign in with the new one."))
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
    let invitation = state(&req).tenancy.invitation(&token).await?;
    let status = if invitation.is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND };
    Page::new("invitation.html")
        .with("invitation", &invitation)
        .with("token", &token.as_str())
        .status(status)
        .render(&req)
        .await
}

async fn invitation_error(req: &HttpRequest, token: &str, message: &str) -> PageResult {
    let invitation = state(req).tenancy.invitation(token).await?;
    Page::new("invitation.html")
        .with("invitation", &invitation)
        .with("token", &token)
        .with("error", &message)
        .status(StatusCode::UNPROCESSABLE_ENTITY)
        .render(req)
        .await
}

#[post("/invitations/{token}/accept")]
async fn accept_invitation(
    req: HttpRequest,
    me: SignedIn,
    token: web::Path<String>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let tenancy = &state(&req).tenancy;
    let user = tenancy.user_by_id(&me.session.user_id).await?;
    match tenancy.accept_invitation(&token, &user).await {
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
    let tenancy = &state(&req).tenancy;
    let Some(invitation) = tenancy.invitation(&token).await? else {
        return invitation_error(&req, &token, "This invitation is no longer valid.").await;
    };
    if tenancy.user(&invitation.email).await.is_ok() {
        return invitation_error(&req, &token, "An account with this address exists: sign in to accept.")
            .await;
    }
    let user =
        match tenancy.create_user(&invitation.email, &form.password, Some(&form.name), "invitation").await {
            Ok(user) => user,
            Err(e) if e.is_user_error() => return invitation_error(&req, &token, &e.to_string()).await,
            Err(e) => return Err(e.into()),
        };
    let slug = tenancy.accept_invitation(&token, &user).await?;
    start_session(&req, &user.id, &format!("/w/{slug}/")).await
}

//! The HTML templates (tera), embedded in the binary so `silo` runs from any directory, and
//! the stylesheet.

use std::sync::LazyLock;

use tera::Tera;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

/// Every template, parsed once.
pub static TEMPLATES: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    // Times as people read them (see `when`).
    tera.register_filter("when", crate::when::when_filter);
    tera.register_filter("day", crate::when::day_filter);
    tera.add_raw_templates(templates![
        "base.html",
        "macros.html",
        "error.html",
        "home.html",
        "signup.html",
        "signup_confirm.html",
        "workspace_new.html",
        "login.html",
        "password_forgot.html",
        "password_reset.html",
        "account.html",
        "invitation.html",
        "workspace/dashboard.html",
        "workspace/project.html",
        "workspace/task.html",
        "workspace/search.html",
        "workspace/members.html",
        "workspace/settings.html",
        "workspace/billing.html",
        "workspace/plan_confirm.html",
        "billing/invoice.html",
        "admin/tenants.html",
        "admin/tenant.html",
        "admin/fleet.html",
        "admin/audit.html",
        "admin/jobs.html",
        "admin/requests.html",
        "admin/invoices.html",
    ])
    .expect("the embedded templates parse");
    tera
});

/// The stylesheet served at `/static/silo.css`.
pub const STYLESHEET: &str = include_str!("../static/silo.css");

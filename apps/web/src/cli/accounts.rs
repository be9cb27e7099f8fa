//! `silo admin …`, `silo user …`, `silo member …`: accounts, operators, memberships, tokens.
//! Passwords are read from standard input only (`--password-stdin`), never from arguments.

use clap::{Args, Subcommand};
use silo_accounts::{Accounts, Role, TokenScope, User};
use silo_core::TenantRef;

use super::actor;

/// `silo admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an operator account.
    Create(NewAccount),
    /// Print a new operator API token (shown once).
    Token {
        /// The operator's email.
        email: String,
    },
}

/// `silo user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account, optionally as a member of a tenant.
    Create {
        #[command(flatten)]
        account: NewAccount,
        /// Also add the account to this tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
        /// Role in that tenant (owner, admin, member).
        #[arg(long, default_value = "member", requires = "tenant")]
        role: String,
    },
    /// Print a new personal API token for one tenant (shown once).
    Token {
        /// The user's email.
        email: String,
        /// The tenant the token acts in.
        #[arg(long, value_name = "SLUG")]
        tenant: String,
        /// The token stops working after this many days (default: when revoked).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=3650))]
        expires_days: Option<u64>,
        /// What the token is for (shown on the account page).
        #[arg(long, default_value = "")]
        name: String,
        /// The token may only read.
        #[arg(long)]
        read_only: bool,
    },
}

/// `silo member …`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add an existing account to a tenant (or change its role).
    Add {
        /// Tenant slug or id.
        tenant: String,
        /// The account's email.
        email: String,
        /// Role (owner, admin, member).
        #[arg(long, default_value = "member")]
        role: String,
    },
}

/// The arguments of every account-creating command.
#[derive(Debug, Args)]
pub struct NewAccount {
    /// The account's email.
    email: String,
    #[command(flatten)]
    password: PasswordStdin,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
}

impl NewAccount {
    /// Reads the password from stdin and creates the account.
    async fn create(&self, accounts: &Accounts) -> anyhow::Result<User> {
        let password = self.password.read()?;
        Ok(accounts.users().create(&self.email, &password, self.name.as_deref(), &actor()).await?)
    }
}

/// `--password-stdin`: required, so a password never lands in shell history or `ps`.
#[derive(Debug, Args)]
pub struct PasswordStdin {
    /// Read the password from the first line of standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
}

impl PasswordStdin {
    fn read(&self) -> anyhow::Result<String> {
        let password = crate::output::read_stdin_line()?;
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok(password)
    }
}

impl AdminCommand {
    /// Runs the command.
    pub async fn run(self, accounts: &Accounts) -> anyhow::Result<()> {
        match self {
            Self::Create(account) => {
                let user = account.create(accounts).await?;
                accounts.users().grant_operator(&user.email, &actor()).await?;
                crate::say!("created operator {} ({})", user.email, user.id);
            }
            Self::Token { email } => {
                crate::say!("{}", accounts.tokens().issue(&email, TokenScope::Operator, &actor()).await?)
            }
        }
        Ok(())
    }
}

impl UserCommand {
    /// Runs the command.
    pub async fn run(self, accounts: &Accounts) -> anyhow::Result<()> {
        match self {
            Self::Create { account, tenant, role } => {
                // Validate the membership's arguments before creating anything.
                let membership = match tenant {
                    Some(tenant) => {
                        let reference = tenant.parse::<TenantRef>()?;
                        accounts.tenancy().tenant(&reference).await?;
                        Some((reference, role.parse::<Role>()?))
                    }
                    None => None,
                };
                let user = account.create(accounts).await?;
                crate::say!("created user {} ({})", user.email, user.id);
                if let Some((tenant, role)) = membership {
                    accounts.memberships().add(&tenant, &user.email, role, &actor()).await?;
                    crate::say!("added {} to {tenant} as {}", user.email, role.as_str());
                }
            }
            Self::Token { email, tenant, expires_days, name, read_only } => {
                let scope = TokenScope::Personal(tenant.parse()?);
                let lifetime = expires_days.map(|days| std::time::Duration::from_secs(days * 86_400));
                let spec = silo_accounts::TokenSpec { name, lifetime, read_only };
                crate::say!("{}", accounts.tokens().issue_with(&email, scope, &actor(), &spec).await?);
            }
        }
        Ok(())
    }
}

impl MemberCommand {
    /// Runs the command.
    pub async fn run(self, accounts: &Accounts) -> anyhow::Result<()> {
        match self {
            Self::Add { tenant, email, role } => {
                let role = role.parse::<Role>()?;
                accounts.memberships().add(&tenant.parse()?, &email, role, &actor()).await?;
                crate::say!("added {email} to {tenant} as {}", role.as_str());
            }
        }
        Ok(())
    }
}

//! The model-based test: random sequences of ordinary actions — sign-up, invite, accept, role
//! change, leave, remove, projects, tasks and comments, export, a person's erasure, backup and
//! restore — run against the real domain services (accounts, billing, the fleet and its job
//! workers) over real files, with the invariants checked after every step:
//!
//! - the control plane's memberships are the model's, and the tenant files agree: every current
//!   member has a current member row with their role, every current member row is a member;
//! - every workspace with members has an owner;
//! - every task, project and comment of a person not erased is attributed to their member row
//!   (present or gone), and what an erased person wrote is anonymised or gone;
//! - an erased person's canary (in their address, name, tasks, comments and projects) is in no
//!   byte of the data directory (tenant files and their WAL, `control.db`, exports), and a
//!   restore of a backup from before the erasure does not bring it back;
//! - the plan's seats and projects hold.
//!
//! `cargo test` runs 200 cases (each a fresh data directory, about a minute here);
//! `SILO_MODEL_CASES=2000 cargo test -p silo-e2e --test model` runs more. A failure is shrunk
//! by proptest to the shortest sequence that breaks an invariant, printed with the seed.

use silo_backups::BackupsExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use silo_accounts::users::User;
use silo_accounts::{Accounts, By, Role};
use silo_backups::BackupKind;
use silo_billing::{Billing, Plan, Plans};
use silo_core::TenantRef;
use silo_e2e::files_containing;
use silo_jobs::JobStatus;
use silo_jobs::{PoolSettings, Workers};
use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

/// People in every case (accounts exist from the start; signing up makes their workspace).
const PEOPLE: usize = 4;
/// The plan every workspace is on: its seats and projects are checked.
const SEATS: u32 = 3;
const PROJECTS: u32 = 2;

fn canary(person: usize) -> String {
    format!("zqmodel{}canary", ["ada", "bob", "cyd", "dee"][person])
}

/// A control plane with the people's accounts, made once (hashing four passwords) and copied
/// into every case's data directory.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            runtime().block_on(async {
                let tenancy = silo_web::schema::open(Settings::for_data_dir(dir.path())).await.unwrap();
                let accounts = Accounts::new(tenancy.clone(), Default::default());
                for person in 0..PEOPLE {
                    let name = format!("P{person} {}", canary(person));
                    let email = format!("{}@example.com", canary(person));
                    accounts.users().create(&email, silo_e2e::PASSWORD, Some(&name), "model").await.unwrap();
                }
                tenancy.shutdown().await;
            });
            dir
        })
        .path()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

#[derive(Clone, Debug)]
enum Step {
    SignUp(usize),
    Invite { ws: usize, by: usize, to: usize, admin: bool },
    Accept(usize),
    ChangeRole { ws: usize, by: usize, target: usize, role: usize },
    Leave { ws: usize, who: usize },
    Remove { ws: usize, by: usize, target: usize },
    Project { ws: usize, who: usize },
    Task { ws: usize, who: usize, assignee: usize },
    Comment { ws: usize, who: usize, task: usize },
    Export(usize),
    Erase(usize),
    Backup(usize),
    Restore(usize),
}

fn step() -> impl Strategy<Value = Step> {
    // Drawn numbers; `World::resolve` turns them into workspaces and people that exist.
    let p = 0..PEOPLE;
    let w = 0..3usize;
    prop_oneof![
        3 => p.clone().prop_map(Step::SignUp),
        4 => (w.clone(), p.clone(), p.clone(), any::<bool>()).prop_map(|(ws, by, to, admin)| Step::Invite { ws, by, to, admin }),
        4 => (0..4usize).prop_map(Step::Accept),
        2 => (w.clone(), p.clone(), p.clone(), 0..3usize).prop_map(|(ws, by, target, role)| Step::ChangeRole { ws, by, target, role }),
        2 => (w.clone(), p.clone()).prop_map(|(ws, who)| Step::Leave { ws, who }),
        1 => (w.clone(), p.clone(), p.clone()).prop_map(|(ws, by, target)| Step::Remove { ws, by, target }),
        2 => (w.clone(), p.clone()).prop_map(|(ws, who)| Step::Project { ws, who }),
        5 => (w.clone(), p.clone(), p.clone()).prop_map(|(ws, who, assignee)| Step::Task { ws, who, assignee }),
        4 => (w.clone(), p.clone(), 0..8usize).prop_map(|(ws, who, task)| Step::Comment { ws, who, task }),
        1 => w.clone().prop_map(Step::Export),
        2 => p.clone().prop_map(Step::Erase),
        2 => w.clone().prop_map(Step::Backup),
        1 => w.prop_map(Step::Restore),
    ]
}

/// A row the model expects in a workspace's file, and who wrote it.
#[derive(Clone, Debug)]
struct Written {
    id: i64,
    author: usize,
}

/// A pending invitation as the model knows it.
#[derive(Clone, Debug)]
struct Invitation {
    ws: usize,
    to: usize,
    by: usize,
    role: Role,
    secret: String,
}

/// What the model knows of one workspace.
#[derive(Clone, Debug, Default)]
struct Ws {
    /// Soft-deleted: its last member was erased.
    closed: bool,
    roles: BTreeMap<usize, Role>,
    projects: Vec<Written>,
    tasks: Vec<Written>,
    comments: Vec<Written>,
}

/// The model, and the real services it is compared with.
struct World {
    tenancy: Tenancy,
    accounts: Accounts,
    billing: Billing,
    users: Vec<User>,
    erased: BTreeSet<usize>,
    tenants: Vec<Tenant>,
    ws: Vec<Ws>,
    /// Pending invitations.
    invitations: Vec<Invitation>,
    /// Per workspace, its backups with the model as it was then.
    backups: HashMap<usize, Vec<(String, Ws)>>,
    counter: usize,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pool: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn data_dir(world: &World) -> PathBuf {
    world.tenancy.settings().data_dir.clone()
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(template()).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
            }
        }
        let mut settings = Settings::for_data_dir(dir.path());
        settings.exports.per_day = 10_000;
        settings.exports.min_free_mb = 0;
        let tenancy = silo_web::schema::open(settings).await.unwrap();
        let accounts = Accounts::new(tenancy.clone(), Default::default());
        let mut plans = Plans::default();
        plans.0.insert(
            "model".into(),
            Plan { seats: Some(SEATS), projects: Some(PROJECTS), self_service: true, ..Plan::default() },
        );
        let billing = Billing::new(accounts.clone(), plans, Default::default());
        let mut users = Vec::new();
        for person in 0..PEOPLE {
            users.push(accounts.users().by_email(&format!("{}@example.com", canary(person))).await.unwrap());
        }
        let mut workers = Workers::new();
        silo_tenancy::jobs::register(&mut workers, &tenancy);
        silo_accounts::subjects::register(&mut workers, &accounts);
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let settings =
            PoolSettings { concurrency: 2, lease: Duration::from_secs(30), poll: Duration::from_millis(10) };
        let pool = tokio::spawn(workers.run(tenancy.jobs(), settings, async move {
            let _ = stopping.await;
        }));
        Self {
            tenancy,
            accounts,
            billing,
            users,
            erased: BTreeSet::new(),
            tenants: Vec::new(),
            ws: Vec::new(),
            invitations: Vec::new(),
            backups: HashMap::new(),
            counter: 0,
            stop: Some(stop),
            pool: Some(pool),
            _dir: dir,
        }
    }

    async fn finish(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.pool.take().unwrap().await.unwrap();
        self.tenancy.shutdown().await;
    }

    /// A workspace by a drawn number (none before the first sign-up).
    fn pick_ws(&self, drawn: usize) -> Option<usize> {
        let open: Vec<usize> = (0..self.ws.len()).filter(|w| !self.ws[*w].closed).collect();
        (!open.is_empty()).then(|| open[drawn % open.len()])
    }

    /// A current member of `ws` by a drawn number.
    fn pick_member(&self, ws: usize, drawn: usize) -> Option<usize> {
        let members: Vec<usize> = self.ws[ws].roles.keys().copied().collect();
        (!members.is_empty()).then(|| members[drawn % members.len()])
    }

    /// Someone not erased by a drawn number, preferring people outside `ws` (to invite them).
    fn pick_outsider(&self, ws: usize, drawn: usize) -> Option<usize> {
        let outside: Vec<usize> =
            (0..PEOPLE).filter(|p| self.active(*p) && !self.ws[ws].roles.contains_key(p)).collect();
        let anyone: Vec<usize> = (0..PEOPLE).filter(|p| self.active(*p)).collect();
        let pool = if outside.is_empty() { anyone } else { outside };
        (!pool.is_empty()).then(|| pool[drawn % pool.len()])
    }

    fn active(&self, person: usize) -> bool {
        !self.erased.contains(&person)
    }

    fn by(&self, person: usize) -> By<'_> {
        By::Member { user_id: &self.users[person].id, label: &self.users[person].email }
    }

    async fn wait(&self, job: &str) -> silo_jobs::Job {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.tenancy.jobs().get(job).await.unwrap();
            if matches!(job.status, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "job did not finish: {job:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn member_id(&self, ws: usize, person: usize) -> Option<i64> {
        let db = self.tenancy.db(self.tenants[ws].id).await.unwrap();
        silo_workspace::members::by_user(&db.turn().await, &self.users[person].id).unwrap().map(|m| m.id)
    }

    /// A refused action must be the caller's doing (a rule, a limit), never a fault.
    fn refused(&self, what: &str, kind: silo_core::ErrorKind, error: &dyn std::fmt::Debug) {
        assert!(kind.is_users(), "{what} failed with a fault: {error:?}");
    }

    /// The step with its drawn numbers made into workspaces and people that exist now (so most
    /// steps act instead of being skipped); `None` when nothing fits.
    fn resolve(&self, step: &Step) -> Option<Step> {
        Some(match *step {
            Step::SignUp(p) => Step::SignUp(p),
            Step::Invite { ws, by, to, admin } => {
                let ws = self.pick_ws(ws)?;
                Step::Invite { ws, by: self.pick_member(ws, by)?, to: self.pick_outsider(ws, to)?, admin }
            }
            Step::Accept(i) => Step::Accept(i),
            Step::ChangeRole { ws, by, target, role } => {
                let ws = self.pick_ws(ws)?;
                Step::ChangeRole {
                    ws,
                    by: self.pick_member(ws, by)?,
                    target: self.pick_member(ws, target)?,
                    role,
                }
            }
            Step::Leave { ws, who } => {
                let ws = self.pick_ws(ws)?;
                Step::Leave { ws, who: self.pick_member(ws, who)? }
            }
            Step::Remove { ws, by, target } => {
                let ws = self.pick_ws(ws)?;
                Step::Remove { ws, by: self.pick_member(ws, by)?, target: self.pick_member(ws, target)? }
            }
            Step::Project { ws, who } => {
                let ws = self.pick_ws(ws)?;
                Step::Project { ws, who: self.pick_member(ws, who)? }
            }
            Step::Task { ws, who, assignee } => {
                let ws = self.pick_ws(ws)?;
                Step::Task { ws, who: self.pick_member(ws, who)?, assignee: self.pick_member(ws, assignee)? }
            }
            Step::Comment { ws, who, task } => {
                let ws = self.pick_ws(ws)?;
                Step::Comment { ws, who: self.pick_member(ws, who)?, task }
            }
            Step::Export(ws) => Step::Export(self.pick_ws(ws)?),
            Step::Erase(p) => {
                let active: Vec<usize> = (0..PEOPLE).filter(|p| self.active(*p)).collect();
                Step::Erase(*active.get(p % active.len().max(1))?)
            }
            Step::Backup(ws) => Step::Backup(self.pick_ws(ws)?),
            Step::Restore(ws) => Step::Restore(self.pick_ws(ws)?),
        })
    }

    /// Resolves a drawn step and acts on it; returns the step acted on.
    async fn apply(&mut self, drawn: &Step) -> Option<Step> {
        let step = self.resolve(drawn)?;
        self.act(&step).await;
        Some(step)
    }

    async fn act(&mut self, step: &Step) {
        self.counter += 1;
        let n = self.counter;
        match *step {
            Step::SignUp(p) => {
                if !self.active(p) || self.tenants.len() >= 3 {
                    return;
                }
                let request = CreateTenant {
                    slug: format!("ws-{}", self.tenants.len()),
                    plan: Some("model".into()),
                    ..CreateTenant::default()
                };
                let tenant = self
                    .billing
                    .subscriptions()
                    .create_tenant(request, Some(&self.users[p]), "model")
                    .await
                    .unwrap();
                self.tenants.push(tenant);
                self.ws.push(Ws { roles: BTreeMap::from([(p, Role::Owner)]), ..Ws::default() });
            }
            Step::Invite { ws, by, to, admin } => {
                if ws >= self.tenants.len() || !self.active(by) || !self.active(to) {
                    return;
                }
                let role = if admin { Role::Admin } else { Role::Member };
                let email = self.users[to].email.to_string();
                match self
                    .billing
                    .limits()
                    .invite(&self.tenants[ws], &email, role, &self.users[by], "http://x")
                    .await
                {
                    Ok((_, secret)) => {
                        assert!(
                            self.ws[ws].roles.get(&by).is_some_and(|r| r.includes(Role::Admin)),
                            "{by} invited without the right"
                        );
                        // It replaces the one pending to that address there.
                        self.invitations.retain(|i| !(i.ws == ws && i.to == to));
                        self.invitations.push(Invitation { ws, to, by, role, secret });
                    }
                    Err(e) => self.refused("an invitation", e.kind(), &e),
                }
            }
            Step::Accept(i) => {
                if self.invitations.is_empty() {
                    return;
                }
                let Invitation { ws, to, role, secret, .. } =
                    self.invitations.remove(i % self.invitations.len());
                if !self.active(to) {
                    return;
                }
                match self.accounts.invitations().accept(&secret, &self.users[to]).await {
                    Ok(_) => {
                        assert!(!self.ws[ws].roles.contains_key(&to), "a member accepted an invitation");
                        self.ws[ws].roles.insert(to, role);
                        // Joining revokes the address's other invitations there.
                        self.invitations.retain(|i| !(i.ws == ws && i.to == to));
                    }
                    Err(e) => self.refused("accepting", e.kind(), &e),
                }
            }
            Step::ChangeRole { ws, by, target, role } => {
                if ws >= self.tenants.len() || !self.active(by) || !self.active(target) {
                    return;
                }
                let role = [Role::Owner, Role::Admin, Role::Member][role];
                let memberships = self.accounts.memberships();
                match memberships
                    .change_role(&self.tenants[ws], &self.users[target].id, role, self.by(by))
                    .await
                {
                    Ok(()) => {
                        let before = self.ws[ws].roles.insert(target, role);
                        assert!(before.is_some(), "a role given to a non-member");
                        if role == Role::Member {
                            // Demoted to member: their pending invitations there are revoked.
                            self.invitations.retain(|i| !(i.ws == ws && i.by == target));
                        }
                        self.invitations.retain(|i| !(i.ws == ws && i.to == target));
                    }
                    Err(e) => self.refused("a role change", e.kind(), &e),
                }
            }
            Step::Leave { ws, who } => self.remove(ws, who, who).await,
            Step::Remove { ws, by, target } => self.remove(ws, by, target).await,
            Step::Project { ws, who } => {
                if ws >= self.tenants.len() || !self.ws[ws].roles.contains_key(&who) {
                    return;
                }
                let db = self.tenancy.db(self.tenants[ws].id).await.unwrap();
                let me = self.member_id(ws, who).await;
                let name = format!("{} project {n}", canary(who));
                match self.billing.limits().create_project(&self.tenants[ws], &db.turn().await, &name, "", me)
                {
                    Ok(id) => self.ws[ws].projects.push(Written { id, author: who }),
                    Err(e) => {
                        self.refused("a project", e.kind(), &e);
                        assert_eq!(
                            self.ws[ws].projects.len(),
                            PROJECTS as usize,
                            "refused below the limit: {e}"
                        );
                    }
                }
            }
            Step::Task { ws, who, assignee } => {
                if ws >= self.tenants.len()
                    || !self.ws[ws].roles.contains_key(&who)
                    || self.ws[ws].projects.is_empty()
                {
                    return;
                }
                let db = self.tenancy.db(self.tenants[ws].id).await.unwrap();
                let me = self.member_id(ws, who).await;
                let assignee = match self.ws[ws].roles.contains_key(&assignee) {
                    true => self.member_id(ws, assignee).await,
                    false => None,
                };
                let task = silo_workspace::tasks::NewTask {
                    project_id: self.ws[ws].projects[0].id,
                    title: format!("{} task {n}", canary(who)),
                    body: format!("notes by {}", canary(who)),
                    assignee_id: assignee,
                    ..Default::default()
                };
                let id = silo_workspace::tasks::create(&db.turn().await, &task, me).unwrap();
                self.ws[ws].tasks.push(Written { id, author: who });
            }
            Step::Comment { ws, who, task } => {
                if ws >= self.tenants.len()
                    || !self.ws[ws].roles.contains_key(&who)
                    || self.ws[ws].tasks.is_empty()
                {
                    return;
                }
                let db = self.tenancy.db(self.tenants[ws].id).await.unwrap();
                let me = self.member_id(ws, who).await;
                let task = self.ws[ws].tasks[task % self.ws[ws].tasks.len()].id;
                let id = silo_workspace::comments::create(
                    &db.turn().await,
                    task,
                    me,
                    &format!("{} says {n}", canary(who)),
                )
                .unwrap();
                self.ws[ws].comments.push(Written { id, author: who });
            }
            Step::Export(ws) => {
                if ws >= self.tenants.len() {
                    return;
                }
                let started = self.tenancy.exports().start(self.tenants[ws].id, "model").await.unwrap();
                let job = self.wait(&started.job().id).await;
                assert_eq!(job.status, JobStatus::Done, "{job:?}");
            }
            Step::Erase(p) => {
                if !self.active(p) {
                    return;
                }
                let job =
                    self.accounts.subjects().start_erasure(&self.users[p].email, "model").await.unwrap();
                let job = self.wait(&job.id).await;
                assert_eq!(job.status, JobStatus::Done, "{job:?}");
                self.erased.insert(p);
                for ws in 0..self.ws.len() {
                    if self.ws[ws].roles.keys().eq([&p]) {
                        // They were its only member: the workspace is closed.
                        self.ws[ws].closed = true;
                    }
                    self.forget(ws, p);
                    if self.ws[ws].roles.remove(&p) == Some(Role::Owner) && self.owners(ws) == 0 {
                        // The last owner's erasure hands the workspace to the longest-standing
                        // admin, else member: whoever the real service chose.
                        self.adopt_owner(ws).await;
                    }
                }
                // Erasure deletes the invitations to them and revokes those they sent.
                self.invitations.retain(|i| i.to != p && i.by != p);
            }
            Step::Backup(ws) => {
                if ws >= self.tenants.len() {
                    return;
                }
                let at = TenantRef::Id(self.tenants[ws].id);
                let backup = self.tenancy.backups().create(&at, BackupKind::Manual, "model").await.unwrap();
                let snapshot = self.ws[ws].clone();
                self.backups.entry(ws).or_default().push((backup.id, snapshot));
            }
            Step::Restore(ws) => {
                let Some((id, snapshot)) = self.backups.get(&ws).and_then(|b| b.first()).cloned() else {
                    return;
                };
                let at = TenantRef::Id(self.tenants[ws].id);
                self.tenancy.backups().restore(&at, Some(&id), None, "model").await.unwrap();
                // The file is as it was then, less everyone erased since; the members are today's.
                let roles = std::mem::take(&mut self.ws[ws].roles);
                self.ws[ws] = Ws { roles, ..snapshot };
                for p in self.erased.clone() {
                    self.forget(ws, p);
                }
            }
        }
    }

    /// What erasing `person` does to the model of workspace `ws`'s file.
    fn forget(&mut self, ws: usize, person: usize) {
        self.ws[ws].comments.retain(|c| c.author != person);
    }

    fn owners(&self, ws: usize) -> usize {
        self.ws[ws].roles.values().filter(|r| **r == Role::Owner).count()
    }

    async fn adopt_owner(&mut self, ws: usize) {
        let memberships = self.accounts.memberships();
        for (person, role) in self.ws[ws].roles.clone() {
            let now = memberships.role(self.tenants[ws].id, &self.users[person].id).await.unwrap();
            if now == Some(Role::Owner) {
                assert_ne!(role, Role::Owner);
                self.ws[ws].roles.insert(person, Role::Owner);
            }
        }
    }

    async fn remove(&mut self, ws: usize, by: usize, target: usize) {
        if ws >= self.tenants.len() || !self.active(by) || !self.active(target) {
            return;
        }
        let last_owner = self.ws[ws].roles.get(&target) == Some(&Role::Owner) && self.owners(ws) == 1;
        let memberships = self.accounts.memberships();
        let removed = memberships.remove(&self.tenants[ws], &self.users[target].id, self.by(by)).await;
        match removed {
            Ok(()) => {
                assert!(!last_owner, "the last owner left {ws}");
                assert!(self.ws[ws].roles.remove(&target).is_some(), "a non-member was removed");
                // Leaving revokes the invitations to them there and those they sent there.
                self.invitations.retain(|i| !(i.ws == ws && (i.to == target || i.by == target)));
            }
            Err(e) => {
                self.refused("a removal", e.kind(), &e);
                if by == target && self.ws[ws].roles.contains_key(&target) {
                    assert!(last_owner, "a member could not leave: {e}");
                }
            }
        }
    }

    /// Every invariant, against the real files and the control plane.
    async fn check(&self, after: &Step) {
        let memberships = self.accounts.memberships();
        for (ws, tenant) in self.tenants.iter().enumerate() {
            let model = &self.ws[ws];
            let status = self.tenancy.tenant(&TenantRef::Id(tenant.id)).await.unwrap().status;
            if model.closed {
                assert_eq!(status, silo_tenancy::TenantStatus::Deleting, "ws-{ws} after {after:?}");
                continue;
            }
            assert_eq!(status, silo_tenancy::TenantStatus::Active, "ws-{ws} after {after:?}");
            // Memberships: the control plane is the model.
            for person in 0..PEOPLE {
                let actual = memberships.role(tenant.id, &self.users[person].id).await.unwrap();
                assert_eq!(
                    actual,
                    model.roles.get(&person).copied(),
                    "ws-{ws}, person {person}, after {after:?}"
                );
            }
            if !model.roles.is_empty() {
                assert!(self.owners(ws) >= 1, "ws-{ws} has members and no owner after {after:?}");
            }
            // The file agrees with the control plane.
            let db = self.tenancy.db(tenant.id).await.unwrap().turn().await;
            let rows: Vec<(i64, String, String, Option<String>)> = db
                .call(|conn| {
                    let mut statement = conn.prepare("SELECT id, user_id, role, left_at FROM members")?;
                    let rows =
                        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                    rows.collect()
                })
                .unwrap();
            let by_user: HashMap<&str, &(i64, String, String, Option<String>)> =
                rows.iter().map(|r| (r.1.as_str(), r)).collect();
            for (person, role) in &model.roles {
                let row = by_user
                    .get(self.users[*person].id.as_str())
                    .unwrap_or_else(|| panic!("ws-{ws}: member {person} has no row after {after:?}"));
                assert_eq!(
                    (row.2.as_str(), row.3.as_deref()),
                    (role.as_str(), None),
                    "ws-{ws}: member {person} after {after:?}"
                );
            }
            for row in rows.iter().filter(|r| r.3.is_none()) {
                let person = self
                    .users
                    .iter()
                    .position(|u| u.id.as_str() == row.1)
                    .expect("a member row of a stranger");
                assert!(
                    model.roles.contains_key(&person),
                    "ws-{ws}: {person} is current in the file only, after {after:?}"
                );
            }
            for person in &self.erased {
                assert!(
                    !by_user.contains_key(self.users[*person].id.as_str()),
                    "ws-{ws}: erased {person} has a row"
                );
            }
            // Attribution: everything written keeps its author's member row (present or gone).
            let member_of = |person: usize| by_user.get(self.users[person].id.as_str()).map(|r| r.0);
            let attributed = |table: &'static str, column: &'static str, id: i64| -> Option<Option<i64>> {
                db.call(|conn| {
                    use rusqlite::OptionalExtension;
                    conn.query_row(&format!("SELECT {column} FROM {table} WHERE id = ?"), [id], |r| r.get(0))
                        .optional()
                })
                .unwrap()
            };
            for (table, column, written) in [
                ("projects", "created_by", &model.projects),
                ("tasks", "created_by", &model.tasks),
                ("comments", "author_id", &model.comments),
            ] {
                for w in written {
                    let by = attributed(table, column, w.id)
                        .unwrap_or_else(|| panic!("ws-{ws}: {table} {} is gone after {after:?}", w.id));
                    let expected = if self.erased.contains(&w.author) { None } else { member_of(w.author) };
                    assert!(
                        expected.is_some() || self.erased.contains(&w.author),
                        "ws-{ws}: author {} of {table} {} has no row",
                        w.author,
                        w.id
                    );
                    assert_eq!(by, expected, "ws-{ws}: {table} {} by {} after {after:?}", w.id, w.author);
                }
            }
            // Invitations: the pending ones are the model's (joining, leaving, demotion and
            // erasure revoke what they should).
            let mut actual: Vec<String> = self
                .accounts
                .invitations()
                .pending(tenant.id)
                .await
                .unwrap()
                .iter()
                .map(|i| i.email.to_string())
                .collect();
            let mut expected: Vec<String> = self
                .invitations
                .iter()
                .filter(|i| i.ws == ws)
                .map(|i| self.users[i.to].email.to_string())
                .collect();
            actual.sort();
            expected.sort();
            assert_eq!(actual, expected, "ws-{ws}: pending invitations after {after:?}");
            // Limits.
            let pending = actual.len();
            let seats = memberships.count(tenant.id).await.unwrap() as usize + pending;
            assert!(seats <= SEATS as usize, "ws-{ws}: {seats} seats taken after {after:?}");
            assert!(silo_workspace::projects::count(&db).unwrap() <= i64::from(PROJECTS));
        }
        // The erased are in no byte of the data directory.
        for person in &self.erased {
            let found = files_containing(&data_dir(self), canary(*person).as_bytes());
            if let Some(file) = found.first() {
                let bytes = std::fs::read(file).unwrap();
                let needle = canary(*person);
                let at = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap();
                let around =
                    String::from_utf8_lossy(&bytes[at.saturating_sub(120)..(at + 80).min(bytes.len())])
                        .into_owned();
                panic!(
                    "erased person {person}'s canary in {found:?} (at byte {at}: {around:?}) after {after:?}"
                );
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("SILO_MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn ordinary_actions_never_break_an_invariant(steps in proptest::collection::vec(step(), 1..30)) {
        template();
        runtime().block_on(async {
            let mut world = World::new().await;
            for drawn in &steps {
                if let Some(step) = world.apply(drawn).await {
                    world.check(&step).await;
                }
            }
            world.finish().await;
        });
    }
}

/// A fixed sequence the random ones may miss: a person writes, leaves, is erased, and a backup
/// from before is restored; then the workspace's owner is erased while others remain.
#[test]
fn a_member_who_left_is_erased_and_a_restore_does_not_bring_them_back() {
    template();
    runtime().block_on(async {
        let mut world = World::new().await;
        let steps = [
            Step::SignUp(0),
            Step::Project { ws: 0, who: 0 },
            Step::Invite { ws: 0, by: 0, to: 1, admin: false },
            Step::Accept(0),
            Step::Invite { ws: 0, by: 0, to: 2, admin: true },
            Step::Accept(0),
            Step::Task { ws: 0, who: 1, assignee: 1 },
            Step::Comment { ws: 0, who: 1, task: 0 },
            Step::Project { ws: 0, who: 1 },
            Step::Backup(0),
            Step::Export(0),
            Step::Leave { ws: 0, who: 0 },
            Step::Leave { ws: 0, who: 1 },
            Step::Erase(1),
            Step::Restore(0),
            Step::Task { ws: 0, who: 2, assignee: 0 },
            Step::Erase(0),
        ];
        for step in &steps {
            world.act(step).await;
            world.check(step).await;
        }
        assert_eq!(
            world.ws[0].roles.get(&2),
            Some(&Role::Owner),
            "the admin took over: {:?}",
            world.ws[0].roles
        );
        world.finish().await;
    });
}

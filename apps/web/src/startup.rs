//! The [`Application`]: everything `silo serve` runs, built in one place and stopped by one
//! signal. `main` (through `silo serve`) and the end-to-end tests' server helper both use it,
//! so what the tests run is what production runs.
//!
//! Built: the fleet ([`Tenancy`], with the product's tenant schema), the people
//! ([`Accounts`]), the HTTP server, the outbox's SMTP delivery loop (when `[smtp]` names a
//! host), the backup scheduler (when `backup.schedule`), the durable job workers, the usage
//! meter's flush, billing's schedule (last month's billing run, the daily dunning pass; when
//! `billing.schedule`), the hourly sweep of expired exports and old finished jobs, and the
//! operator socket the CLI reaches the server through ([`crate::cli::remote`]). The
//! application holds the data-directory lock (`silo.lock`) from start to stop: it owns every
//! tenant file in the directory. Jobs
//! run in two lanes: exports in one (`jobs.export_workers`), everything else in the other
//! (`jobs.workers`).
//!
//! Stopped by SIGTERM or SIGINT (actix-web's signal handling) or [`ApplicationHandle::stop`]:
//! the listener stops accepting, requests in flight finish (up to the server's shutdown
//! timeout), then the loops are told to stop and awaited (a backup pass or a delivery batch in
//! progress finishes first), then every tenant handle is closed — SQLite checkpoints a file's
//! WAL when its last connection closes — and the control plane is closed.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use silo_accounts::Accounts;
use silo_backups::BackupsExt;
use silo_jobs::Workers;
use silo_tenancy::{DataDirLock, Tenancy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::Settings;
use silo_server as server;

/// A built, not yet running, Silo server.
pub struct Application {
    addr: SocketAddr,
    accounts: Accounts,
    billing: silo_billing::Billing,
    server: actix_web::dev::Server,
    /// Tells the loops to stop (see [`Stopping`]).
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    /// Held until every tenant file is closed.
    lock: DataDirLock,
}

/// Stops a running [`Application`] as SIGTERM would.
#[derive(Clone)]
pub struct ApplicationHandle(actix_web::dev::ServerHandle);

impl ApplicationHandle {
    /// Stops accepting, lets requests in flight finish, and returns once the server stopped
    /// (the rest of the shutdown happens in [`Application::run_until_stopped`]).
    pub async fn stop(&self) {
        self.0.stop(true).await;
    }
}

impl Application {
    /// Opens the data directory under `settings` and binds `server.bind`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let bind = settings.server.bind.clone();
        let listener = TcpListener::bind(&bind).with_context(|| format!("cannot listen on {bind}"))?;
        Self::build_on(settings, listener).await
    }

    /// Opens the data directory under `settings` and serves on an already bound listener
    /// (tests bind port 0 and learn the address first).
    pub async fn build_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        // Refuse to start before anything else when links would have no trustworthy origin.
        server::links::Links::resolve(
            settings.server.public_url.as_deref(),
            settings.server.base_domain.as_deref(),
            addr,
        )?;
        let data_dir = settings.fleet.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let lock = DataDirLock::acquire(&data_dir, "serve this data directory")?;
        // Bound before anything is announced: a CLI started once the server says it listens
        // finds the socket (and waits in its backlog until the server accepts).
        let socket = crate::cli::remote::bind(&data_dir)?;
        let tenancy = crate::schema::open(settings.fleet.clone()).await?;
        // One server per control plane unless they run as a cluster (see silo_tenancy::nodes):
        // refused here when another one's heartbeat is fresh.
        let node = settings.fleet.cluster.node_name();
        let cluster = settings.fleet.cluster.secret().is_some();
        // The other servers forward to this address: in a cluster never the public URL (the
        // load balancer may hand a forwarded request to another server, and it would carry the
        // secret through it).
        let advertise = match settings.fleet.cluster.advertise.as_deref().map(str::trim) {
            Some(advertise) => advertise.to_owned(),
            None if cluster && addr.ip().is_unspecified() => anyhow::bail!(
                "[cluster] advertise: this server listens on {addr}; say where the other servers reach it, e.g. http://10.0.0.5:{}",
                addr.port()
            ),
            None if cluster => format!("http://{addr}"),
            None => settings.server.public_url.clone().unwrap_or_else(|| format!("http://{addr}")),
        };
        if cluster {
            check_advertise(&advertise)?;
        }
        if cluster
            && settings.fleet.backup.master_key.is_none()
            && settings.fleet.backup.master_key_file.is_none()
        {
            anyhow::bail!(
                "the servers of a cluster restore each other's tenants from the store, so they share one master key: \
                 set `[backup] master_key` (or SILO_MASTER_KEY, or `master_key_file`) to the same key on each"
            );
        }
        if cluster && settings.server.public_url.is_none() {
            // Links in emails and pages are built by the tenant's server: without one public
            // URL each server writes its own address into them.
            tracing::warn!(
                "a cluster without `[server] public_url`: links in emails and pages name whichever server built them ({addr}); \
                 set the load balancer's address as public_url on every server"
            );
        }
        let data_id = silo_tenancy::nodes::data_id(&data_dir)?;
        tenancy.nodes().register(&node, &advertise, &data_id, cluster).await?;
        // On PostgreSQL this server owns the tenants it serves (silo_tenancy::ownership).
        tenancy.own(&node, &data_id).await?;
        let accounts = Accounts::new(tenancy.clone(), settings.accounts());
        let billing = settings.billing(accounts.clone());
        tracing::info!(
            %addr,
            data_dir = %tenancy.settings().data_dir.display(),
            control = tenancy.control_plane_name(),
            sqlite = tenancy.sqlite_version(),
            "silo listening"
        );
        accounts.outbox().forget_expired_links().await.context("outbox")?;
        // A store that cannot be reached or written is a start-up error, not a surprise at the
        // first backup (this also creates the master key file on the first start).
        tenancy.backups().store().await.context("backup store")?;

        let (stop, stopping) = watch::channel(false);
        let mut loops = Vec::new();
        let smtp = &settings.smtp;
        match silo_accounts::outbox::Mailer::from_settings(smtp)? {
            Some(mailer) => {
                let every = std::time::Duration::from_secs(smtp.poll_seconds.max(1));
                let outbox = accounts.outbox();
                let stopping = Stopping(stopping.clone());
                loops.push(tokio::spawn(
                    async move { outbox.run_mailer(mailer, every, stopping.signal()).await },
                ));
            }
            None => tracing::info!(
                "no [smtp] host: emails are not sent; each is written to this log (sign-up confirmation links included)"
            ),
        }
        if tenancy.settings().backup.schedule {
            if let Some(every) = tenancy.settings().backup.continuous_interval()? {
                // From here on every tenant connection opened follows its log.
                tenancy.backups().logs().enable();
                tracing::info!(interval_ms = every.as_millis() as u64, "continuous backup started");
                let (tenancy, stopping) = (tenancy.clone(), Stopping(stopping.clone()));
                loops.push(tokio::spawn(async move {
                    tenancy.backups().run_shipper(every, stopping.signal()).await
                }));
            }
            let interval = tenancy.settings().backup.interval()?;
            tracing::info!(interval_s = interval.as_secs(), "backup scheduler started");
            let (tenancy, stopping) = (tenancy.clone(), Stopping(stopping.clone()));
            loops.push(tokio::spawn(async move {
                tenancy.backups().run_scheduler(interval, stopping.signal()).await
            }));
        }
        let mut workers = Workers::new();
        silo_tenancy::jobs::register(&mut workers, &tenancy);
        silo_backups::jobs::register(&mut workers, &tenancy.backups());
        silo_accounts::subjects::register(&mut workers, &accounts);
        silo_billing::jobs::register(&mut workers, &billing);
        // Exports have a lane of their own: a queue of them never delays an erasure, a purge
        // or the billing run.
        let exports =
            workers.lane(&[silo_tenancy::jobs::TENANT_EXPORT, silo_accounts::subjects::SUBJECT_EXPORT]);
        let lanes = &tenancy.settings().jobs;
        for (lane, pool) in [(workers, lanes.pool()), (exports, lanes.export_pool())] {
            let (jobs, stopping_jobs) = (tenancy.jobs(), Stopping(stopping.clone()));
            loops.push(tokio::spawn(async move { lane.run(jobs, pool, stopping_jobs.signal()).await }));
        }
        let (meter, stopping_meter) = (billing.clone(), Stopping(stopping.clone()));
        let every = std::time::Duration::from_secs(60);
        loops.push(tokio::spawn(async move { meter.metering().run(every, stopping_meter.signal()).await }));
        if billing.settings().schedule {
            let (billing, stopping) = (billing.clone(), Stopping(stopping.clone()));
            let every = std::time::Duration::from_secs(3600);
            loops.push(tokio::spawn(async move { billing.schedule().run(every, stopping.signal()).await }));
        }
        let (shared, stopping_share, sharing_node) =
            (tenancy.clone(), Stopping(stopping.clone()), node.clone());
        loops.push(tokio::spawn(async move {
            shared.share_directory(&sharing_node, stopping_share.signal()).await
        }));
        let (taker, stopping_takeovers) = (tenancy.clone(), Stopping(stopping.clone()));
        loops.push(tokio::spawn(async move { taker.run_takeovers(stopping_takeovers.signal()).await }));
        let (heart, stopping_heart) = (tenancy.clone(), Stopping(stopping.clone()));
        loops.push(tokio::spawn(async move { heart.nodes().run(&node, stopping_heart.signal()).await }));
        let (swept, stopping_sweep) = (tenancy.clone(), Stopping(stopping.clone()));
        loops.push(tokio::spawn(async move { sweep(swept, stopping_sweep.signal()).await }));
        let services = crate::cli::Services {
            tenancy: tenancy.clone(),
            accounts: accounts.clone(),
            billing: billing.clone(),
        };
        let stopping_socket = Stopping(stopping.clone());
        loops.push(tokio::spawn(async move {
            crate::cli::remote::serve_on(socket, &data_dir, services, stopping_socket.signal()).await
        }));
        let server = server::start(billing.clone(), settings.server, listener)?;
        Ok(Self { addr, accounts, billing, server, stop, loops, lock })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The people (and through them the fleet) the server runs on.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Plans, limits and metering, as the server uses them.
    pub fn billing(&self) -> &silo_billing::Billing {
        &self.billing
    }

    /// A handle that stops the application.
    pub fn handle(&self) -> ApplicationHandle {
        ApplicationHandle(self.server.handle())
    }

    /// Serves until SIGTERM/SIGINT or [`ApplicationHandle::stop`], then stops the loops and
    /// closes every tenant handle and the control plane.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await.context("server failed");
        tracing::info!("stopping: the server has stopped accepting and finished its requests");
        // Receivers may all be gone (no loop running): nothing to tell then.
        let _ = self.stop.send(true);
        for task in self.loops {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background loop panicked");
            }
        }
        if self.accounts.tenancy().shutdown().await {
            tracing::info!("stopped: tenant handles and the control plane are closed");
            drop(self.lock);
        } else {
            // A tenant file is still open (work that outlived the wait). Another process must
            // not take the directory before it is closed: the lock goes with this process.
            tracing::error!(
                "stopped with tenant files still open: the data directory stays locked until this process exits"
            );
            std::mem::forget(self.lock);
        }
        served
    }
}

/// Deletes expired exports, scratch copies a stopped process left behind, and jobs finished
/// longer ago than `jobs.keep_finished_days`, at start and then hourly, until `stop`.
async fn sweep(tenancy: Tenancy, stop: impl std::future::Future<Output = ()>) {
    let keep = std::time::Duration::from_secs(silo_tenancy::jobs::EXPORT_DAYS * 86_400);
    let keep_jobs = tenancy.settings().jobs.keep_finished();
    tokio::pin!(stop);
    loop {
        match tenancy.exports().forget_expired(keep) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired exports deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting expired exports failed"),
        }
        match tenancy.sweep_scratch() {
            0 => {}
            removed => tracing::info!(removed, "scratch copies left by a stopped process deleted"),
        }
        match tenancy.jobs().prune(keep_jobs).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "finished jobs deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting finished jobs failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            () = &mut stop => return,
        }
    }
}

/// The loops' side of the stop signal.
struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Completes once the application is stopping.
    async fn signal(mut self) {
        // An error means the sender is gone: the application is gone, so stop too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// A cluster server's `[cluster] advertise`: an `http://host:port` address the other servers
/// can call. Their client speaks plain HTTP (deploy/README.md: keep their addresses on a
/// private network), so an `https://` address would fail at the first forward; an unspecified
/// host (0.0.0.0, `[::]`) names no machine to call.
fn check_advertise(advertise: &str) -> anyhow::Result<()> {
    let host = advertise
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or_default())
        .map(|authority| authority.rsplit_once(':').map_or(authority, |(host, _)| host))
        .map(|host| host.trim_matches(['[', ']']));
    match host {
        None => anyhow::bail!(
            "[cluster] advertise = {advertise:?}: the servers of a cluster call each other over plain HTTP on a private network; give this server's address there as http://host:port"
        ),
        Some(host)
            if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) =>
        {
            anyhow::bail!(
                "[cluster] advertise = {advertise:?} names no machine the other servers can call: give this server's address on their network, e.g. http://10.0.0.5:8080"
            )
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_advertised_address_is_one_the_other_servers_can_call() {
        for good in ["http://10.0.0.5:8080", "http://n1.internal:8080/", "http://[fd00::5]:8080"] {
            assert!(super::check_advertise(good).is_ok(), "{good}");
        }
        for bad in [
            "https://10.0.0.5:8443",
            "HTTP://10.0.0.5:80",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "http://",
            "10.0.0.5:8080",
        ] {
            assert!(super::check_advertise(bad).is_err(), "{bad}");
        }
    }
}

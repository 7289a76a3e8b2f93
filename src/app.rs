//! The daemon's wiring (`ferry run`): one instance lock, the store, the
//! client, the workers, the delivery loop, one watcher per watch rule, one
//! timer per schedule rule and the HTTP server, all stopped through one
//! tree of cancellation tokens.
//!
//! Shutdown: watchers stop, workers stop claiming and get `shutdown_grace`
//! to finish; what still runs then is released back to the queue (its
//! attempt refunded), so the next start carries on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Environment, Loaded};
use crate::openwebui::{Client, ClientOptions};
use crate::store::{self, Store};
use crate::supervise::supervised;
use crate::worker::{self, Shared};
use crate::{deliver, schedule, server, watch};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] crate::openwebui::Error),
    #[error("cannot set up webhook clients: {0}")]
    Webhooks(#[from] reqwest::Error),
}

/// A started daemon.
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Cancel to stop (SIGTERM).
    pub shutdown: CancellationToken,
    /// Send to reload config and rules (SIGHUP).
    pub reload: mpsc::Sender<()>,
    pub task: JoinHandle<()>,
}

/// Starts everything; returns once the daemon is up.
pub async fn start(loaded: Loaded, env: Environment) -> Result<Running, StartError> {
    let config = loaded.config.clone();
    let lock = Store::lock_instance(&config.state.database)?;
    let store = Store::open(&config.state.database).await?;
    let instance_id = store.instance_id().await?;
    let rescued = store.rescue_all(store::now_ms()).await?;
    if rescued > 0 {
        tracing::info!(rescued, "jobs of an earlier run put back in the queue");
    }
    let rescued = store.rescue_deliveries(None, store::now_ms()).await?;
    if rescued > 0 {
        tracing::info!(
            rescued,
            "deliveries of an earlier run will be sent again (same webhook-id)"
        );
    }
    let destinations = Arc::new(deliver::destinations(&config.webhooks)?);
    let client = Client::new(ClientOptions::from(&config.openwebui))?;
    match client.version().await {
        Ok(v) => {
            tracing::info!(version = %v, url = %crate::redact::url(&config.openwebui.url), "Open WebUI reachable")
        }
        Err(e) => {
            tracing::warn!(error = %e, "Open WebUI not reachable yet; work waits and retries")
        }
    }
    let shared = Arc::new(Shared::new(
        store,
        client,
        instance_id,
        loaded.rules.clone(),
    ));
    match shared.ingestor.clean_orphans(true, None).await {
        Ok((0, _)) => {}
        Ok((n, _)) => tracing::info!(deleted = n, "removed uploads that never got linked"),
        Err(e) => tracing::warn!(error = %e, "orphan cleanup failed; will try at the next start"),
    }

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.server.listen,
        source,
    })?;

    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let task = tokio::spawn(supervise(
        Supervisor {
            shared: shared.clone(),
            config_path: config.path.clone(),
            env,
            grace: config.shutdown_grace,
            // Jobs mostly wait (for processing, for a model); requests to Open
            // WebUI stay bounded by `max_in_flight` in the client.
            workers: config.openwebui.max_in_flight * 4,
            admin_token: config.server.admin_token.clone(),
            server: config.server.clone(),
            retention: config.retention,
            addr,
            destinations,
            _lock: lock,
        },
        listener,
        shutdown.clone(),
        reload_rx,
    ));
    tracing::info!(%addr, rules = loaded.rules.len(), instance = %shared.ingestor.instance_id, "ferry running");
    Ok(Running {
        addr,
        shared,
        shutdown,
        reload: reload_tx,
        task,
    })
}

struct Supervisor {
    shared: Arc<Shared>,
    config_path: PathBuf,
    env: Environment,
    grace: std::time::Duration,
    workers: usize,
    admin_token: Option<config::Secret>,
    server: config::ServerConfig,
    retention: store::Retention,
    /// The address the listener is bound to (its port when 0 was asked).
    addr: SocketAddr,
    destinations: Arc<std::collections::HashMap<String, deliver::Destination>>,
    _lock: store::InstanceLock,
}

async fn supervise(
    sup: Supervisor,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) {
    let server_stop = CancellationToken::new();
    let draining = CancellationToken::new();
    let tasks = sup.shared.tasks.clone();
    let listener = Arc::new(listener);
    let router = server::router(
        sup.shared.clone(),
        sup.admin_token.clone(),
        draining.clone(),
        Arc::new(server::AllowedHosts::new(sup.addr, &sup.server.hosts)),
    );
    let connections = server::limits::Connections::new(
        sup.server.max_connections,
        sup.server.max_connections_per_peer,
    );
    let server = tokio::spawn(supervised(
        tasks.clone(),
        "server".into(),
        server_stop.clone(),
        {
            let stop = server_stop.clone();
            move || {
                let (listener, router, stop) = (listener.clone(), router.clone(), stop.clone());
                let connections = connections.clone();
                async move {
                    if let Err(e) = server::serve(listener, router, connections, stop).await {
                        tracing::error!(error = %e, "server failed");
                    }
                }
            }
        },
    ));
    let stop_claims = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let mut workers = tokio::spawn(worker::run_workers(
        sup.shared.clone(),
        sup.workers,
        stop_claims.clone(),
        hard_stop.clone(),
    ));
    let mut deliveries = tokio::spawn(supervised(
        tasks.clone(),
        "deliveries".into(),
        stop_claims.clone(),
        {
            let (shared, destinations) = (sup.shared.clone(), sup.destinations.clone());
            let (stop, hard_stop) = (stop_claims.clone(), hard_stop.clone());
            move || {
                deliver::run(
                    shared.store.clone(),
                    destinations.clone(),
                    shared.deliveries_wake.clone(),
                    shared.owner.clone(),
                    stop.clone(),
                    hard_stop.clone(),
                )
            }
        },
    ));
    let retention = tokio::spawn(supervised(
        tasks.clone(),
        "retention".into(),
        stop_claims.clone(),
        {
            let (store, policy, stop) =
                (sup.shared.store.clone(), sup.retention, stop_claims.clone());
            move || prune_now_and_then(store.clone(), policy, stop.clone())
        },
    ));
    let mut watchers = spawn_watchers(&sup.shared);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reload.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                match config::load(&sup.config_path, &sup.env) {
                    Ok(loaded) => {
                        watchers.0.cancel();
                        while watchers.1.join_next().await.is_some() {}
                        sup.shared.set_rules(loaded.rules);
                        watchers = spawn_watchers(&sup.shared);
                        tracing::info!(
                            rules = sup.shared.rules().len(),
                            "reloaded rules (openwebui, state and server settings take effect at restart)"
                        );
                    }
                    Err(diags) => {
                        for d in &diags {
                            tracing::error!("{d}");
                        }
                        tracing::error!(errors = diags.len(), "reload refused; the current rules stay");
                    }
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(
        grace_s = sup.grace.as_secs(),
        "stopping: finishing running jobs"
    );
    draining.cancel();
    watchers.0.cancel();
    while watchers.1.join_next().await.is_some() {}
    stop_claims.cancel();
    let drained = async {
        let _ = (&mut workers).await;
        let _ = (&mut deliveries).await;
    };
    if tokio::time::timeout(sup.grace, drained).await.is_err() {
        tracing::warn!("shutdown grace over; unfinished jobs and deliveries go back to the queue");
        hard_stop.cancel();
        let _ = workers.await;
        let _ = deliveries.await;
    }
    let _ = retention.await;
    server_stop.cancel();
    let _ = server.await;
    tracing::info!("stopped");
}

/// Prunes finished work a minute after start, then every hour.
async fn prune_now_and_then(store: Store, policy: store::Retention, stop: CancellationToken) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match store.prune(&policy, store::now_ms()).await {
            Ok(p) if p != store::Pruned::default() => {
                tracing::info!(
                    jobs = p.jobs,
                    deliveries = p.deliveries,
                    keys = p.keys,
                    "pruned"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; trying again later"),
        }
        wait = std::time::Duration::from_secs(3600);
    }
}

fn spawn_watchers(shared: &Arc<Shared>) -> (CancellationToken, tokio::task::JoinSet<()>) {
    let token = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for rule in watch::watch_rules(&shared.rules()) {
        let (s, cancel) = (shared.clone(), token.child_token());
        set.spawn(supervised(
            shared.tasks.clone(),
            format!("watch:{}", rule.name),
            cancel.clone(),
            move || watch::run(s.clone(), rule.clone(), cancel.clone()),
        ));
    }
    for rule in schedule::schedule_rules(&shared.rules()) {
        let (s, cancel) = (shared.clone(), token.child_token());
        set.spawn(supervised(
            shared.tasks.clone(),
            format!("schedule:{}", rule.name),
            cancel.clone(),
            move || schedule::run(s.clone(), rule.clone(), cancel.clone()),
        ));
    }
    (token, set)
}

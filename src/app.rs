//! The daemon's wiring (`ferry run`): one instance lock, the store, the
//! clock, the queue, the workers (the only holders of the Open WebUI
//! client), the delivery loop, the producers of the rules (watchers,
//! timers) and the HTTP server.
//!
//! Shutdown runs in named phases, each with its own token: the server
//! drains (hooks answer 503), producers stop, workers and the delivery
//! loop stop claiming and get `shutdown_grace` to finish; what still runs
//! then is released back to the queue (its attempt refunded), so the next
//! start carries on; last, the server stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{self, Environment};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::openwebui::{Client, ClientOptions};
use crate::rules::RuleSet;
use crate::setup::Loaded;
use crate::store::{self, Store};
use crate::supervise::{Tasks, supervised};
use crate::triggers::{self, Queue, TriggerEvent, UPKEEP_RULE};
use crate::worker::{self, Workers};
use crate::{deliver, server};

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
    /// The state database (tests look at it).
    pub store: Store,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub rules: Arc<RuleSet>,
    /// Cancel to stop (SIGTERM).
    pub shutdown: CancellationToken,
    /// Send to reload config and rules (SIGHUP).
    pub reload: mpsc::Sender<()>,
    pub task: JoinHandle<()>,
}

/// Starts everything on the system clock; returns once the daemon is up.
pub async fn start(loaded: Loaded, env: Environment) -> Result<Running, StartError> {
    start_with_clock(loaded, env, Clock::system()).await
}

/// Starts everything with `clock` as the wall clock (tests pass a manual
/// one).
pub async fn start_with_clock(
    loaded: Loaded,
    env: Environment,
    clock: Clock,
) -> Result<Running, StartError> {
    let config = loaded.config.clone();
    let lock = Store::lock_instance(&config.state.database)?;
    let store = Store::open(&config.state.database).await?;
    let instance_id = store.instance_id().await?;
    let started = clock.now_ms();
    let rescued = store.rescue_all(started).await?;
    if rescued > 0 {
        tracing::info!(rescued, "jobs of an earlier run put back in the queue");
    }
    let rescued = store.rescue_deliveries(None, started).await?;
    if rescued > 0 {
        tracing::info!(
            rescued,
            "deliveries of an earlier run will be sent again (same webhook-id)"
        );
    }
    let destinations = Arc::new(deliver::Destinations::new(deliver::destinations(
        &config.webhooks,
    )?));
    let metrics = Arc::new(Metrics::default());
    for name in config.webhooks.keys() {
        metrics.destination_known(name);
    }
    for class in crate::openwebui::error::CLASSES {
        metrics.openwebui_error_known(class);
    }
    let client = Client::new(ClientOptions {
        metrics: Some(metrics.clone()),
        ..ClientOptions::from(&config.openwebui)
    })?;
    tracing::info!(url = %crate::redact::url(&config.openwebui.url), "Open WebUI at");
    let queue = Queue::new(store.clone(), clock.clone());
    // Start-up recovery is the workers' first job: uploads of a run that
    // is gone (made before this start) are adopted or deleted. Due at
    // once, ahead of anything else.
    queue
        .submit(
            UPKEEP_RULE,
            TriggerEvent::Sweep {
                before_s: Some(started / 1000),
                at_ms: 0,
                round: 0,
            },
        )
        .await?;
    keep_collections(&queue, &loaded.rules).await?;
    let rules = Arc::new(RuleSet::new(loaded.rules.clone()));
    let (tasks, health) = (Arc::new(Tasks::default()), Arc::new(Health::default()));
    let owner = format!("{instance_id}:{}", std::process::id());
    let workers = Arc::new(Workers::new(worker::Parts {
        store: store.clone(),
        client,
        queue: queue.clone(),
        instance_id: instance_id.clone(),
        owner: owner.clone(),
        rules: rules.clone(),
        tasks: tasks.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
    }));

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
    let server_parts = server::Parts {
        store: store.clone(),
        queue: queue.clone(),
        rules: rules.clone(),
        tasks: tasks.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(supervise(
        Supervisor {
            workers,
            server_parts,
            queue,
            health,
            store: store.clone(),
            clock: clock.clone(),
            rules: rules.clone(),
            tasks,
            metrics: metrics.clone(),
            owner,
            config_path: config.path.clone(),
            env,
            grace: config.shutdown_grace,
            // Jobs mostly wait (for processing, for a model); requests to Open
            // WebUI stay bounded by `max_in_flight` in the client.
            worker_count: config.openwebui.max_in_flight * 4,
            admin_token: config.server.admin_token.clone(),
            pages: config.server.ui.then(|| server::ui::Settings {
                password: config.server.ui_password.clone(),
                collection_link: Some(config.openwebui.knowledge_page()),
            }),
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
    tracing::info!(%addr, rules = loaded.rules.len(), instance = %instance_id, "ferry running");
    Ok(Running {
        addr,
        store,
        clock,
        metrics,
        rules,
        shutdown,
        reload: reload_tx,
        task,
    })
}

struct Supervisor {
    workers: Arc<Workers>,
    server_parts: server::Parts,
    queue: Queue,
    health: Arc<Health>,
    store: Store,
    clock: Clock,
    rules: Arc<RuleSet>,
    tasks: Arc<Tasks>,
    metrics: Arc<Metrics>,
    owner: String,
    config_path: PathBuf,
    env: Environment,
    grace: std::time::Duration,
    worker_count: usize,
    admin_token: Option<config::Secret>,
    /// The status pages' settings, handed to the server once.
    pages: Option<server::ui::Settings>,
    server: config::ServerConfig,
    retention: store::Retention,
    /// The address the listener is bound to (its port when 0 was asked).
    addr: SocketAddr,
    destinations: Arc<deliver::Destinations>,
    _lock: store::InstanceLock,
}

async fn supervise(
    mut sup: Supervisor,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) {
    let server_stop = CancellationToken::new();
    let draining = CancellationToken::new();
    let tasks = sup.tasks.clone();
    let listener = Arc::new(listener);
    let router = server::router(
        sup.server_parts.clone(),
        sup.admin_token.clone(),
        sup.server.tool_token.clone(),
        sup.pages.take(),
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
        sup.workers.clone(),
        sup.worker_count,
        stop_claims.clone(),
        hard_stop.clone(),
    ));
    let mut deliveries = tokio::spawn(supervised(
        tasks.clone(),
        "deliveries".into(),
        stop_claims.clone(),
        {
            let parts = deliver::Parts {
                store: sup.store.clone(),
                clock: sup.clock.clone(),
                destinations: sup.destinations.clone(),
                wake: sup.queue.deliveries_ready().clone(),
                owner: sup.owner.clone(),
                health: sup.health.clone(),
                metrics: sup.metrics.clone(),
            };
            let (stop, hard_stop) = (stop_claims.clone(), hard_stop.clone());
            move || deliver::run(parts.clone(), stop.clone(), hard_stop.clone())
        },
    ));
    let service_stop = CancellationToken::new();
    let service = tokio::spawn(supervised(
        tasks.clone(),
        "service".into(),
        service_stop.clone(),
        {
            let parts = crate::service::Parts {
                store: sup.store.clone(),
                rules: sup.rules.clone(),
                health: sup.health.clone(),
                tasks: tasks.clone(),
            };
            let stop = service_stop.clone();
            move || crate::service::run(parts.clone(), stop.clone())
        },
    ));
    let retention = tokio::spawn(supervised(
        tasks.clone(),
        "retention".into(),
        stop_claims.clone(),
        {
            let (store, clock, policy, stop) = (
                sup.store.clone(),
                sup.clock.clone(),
                sup.retention,
                stop_claims.clone(),
            );
            move || prune_now_and_then(store.clone(), clock.clone(), policy, stop.clone())
        },
    ));
    let mut producers = spawn_producers(&sup);
    crate::service::ready();

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reload.recv() => {
                crate::service::reloading();
                // Webhook clients are built first: if one cannot be (a bad
                // proxy), nothing of the reload is applied.
                let loaded = match crate::setup::load(&sup.config_path, &sup.env) {
                    Err(diags) => Err(diags.iter().map(ToString::to_string).collect()),
                    Ok(loaded) => match deliver::destinations(&loaded.config.webhooks) {
                        Ok(d) => Ok((loaded, d)),
                        Err(e) => Err(vec![format!("webhooks: cannot set up a client: {e}")]),
                    },
                };
                match loaded {
                    Ok((loaded, destinations)) => {
                        // Deliveries claimed from now on go by the new
                        // destinations: added, changed, or removed (whose
                        // pending deliveries end as dead letters saying
                        // so, to be redelivered once it is back).
                        for name in destinations.keys() {
                            sup.metrics.destination_known(name);
                        }
                        sup.destinations.replace(destinations);
                        producers.0.cancel();
                        while producers.1.join_next().await.is_some() {}
                        sup.rules.set(loaded.rules);
                        // After the new rules are in place: the job reads them.
                        if let Err(e) = keep_collections(&sup.queue, &sup.rules.all()).await {
                            tracing::error!(error = %e, "cannot queue the collections' upkeep");
                        }
                        producers = spawn_producers(&sup);
                        sup.metrics.reloaded(true);
                        tracing::info!(
                            rules = sup.rules.all().len(),
                            webhooks = sup.destinations.current().len(),
                            "reloaded rules and webhooks (openwebui, state and server settings take effect at restart)"
                        );
                    }
                    Err(diags) => {
                        let diags: Vec<String> = diags;
                        for d in &diags {
                            tracing::error!("{d}");
                        }
                        sup.metrics.reloaded(false);
                        tracing::error!(errors = diags.len(), "reload refused; the current rules stay");
                    }
                }
                crate::service::ready();
            }
        }
    }

    crate::service::stopping();
    service_stop.cancel();
    let _ = service.await;
    tracing::info!(
        grace_s = sup.grace.as_secs(),
        "stopping: finishing running jobs"
    );
    draining.cancel();
    producers.0.cancel();
    while producers.1.join_next().await.is_some() {}
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
async fn prune_now_and_then(
    store: Store,
    clock: Clock,
    policy: store::Retention,
    stop: CancellationToken,
) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match store.prune(&policy, clock.now_ms()).await {
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

fn spawn_producers(sup: &Supervisor) -> (CancellationToken, tokio::task::JoinSet<()>) {
    let producers = sup
        .rules
        .all()
        .iter()
        .filter_map(|r| r.producer())
        .collect();
    triggers::spawn(producers, &sup.queue, &sup.tasks, &sup.metrics)
}

/// Queues the upkeep of every ingest rule's knowledge base (its sharing and
/// description as the rule says), at start and after a reload.
async fn keep_collections(
    queue: &Queue,
    rules: &[crate::rules::Rule],
) -> Result<(), crate::store::StoreError> {
    for rule in rules.iter().filter(|r| r.ingest.is_some()) {
        queue.submit(&rule.name, TriggerEvent::Collection).await?;
    }
    Ok(())
}

//! The node's actor tree: `NodeSupervisor` → `FeedActor`, `VenueActor`,
//! `RiskShardActor` and one `EngineActor` per strategy instance. Actors own life cycles
//! and supervision; the per-event work stays on the hot-path threads.

use super::threads::{Clock, Control, CrashTarget, GatewayLive};
use hft_exec::{RestartDecision, RestartPolicy, StrategyFactory};
use hft_risk::KillSwitch;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

/// Messages of an `EngineActor`.
#[derive(Debug)]
pub enum EngineMsg {
    /// Its strategy panicked (sent by the engine thread).
    Crashed(String),
}

/// Control-plane owner of one strategy instance: installs the strategy when it starts,
/// and fails when the strategy crashes so that its supervisor decides what follows.
pub struct EngineActor;

/// Start-up arguments of an `EngineActor`.
pub struct EngineActorArgs {
    pub(super) control: mpsc::Sender<Control>,
    pub(super) factory: StrategyFactory,
    pub(super) crash: CrashTarget,
    pub(super) restart: bool,
}

impl Actor for EngineActor {
    type Msg = EngineMsg;
    type State = ();
    type Arguments = EngineActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EngineMsg>,
        args: EngineActorArgs,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(mut g) = args.crash.lock() {
            *g = Some(myself);
        }
        args.control
            .send(Control::Install {
                strategy: (args.factory)(),
                restart: args.restart,
            })
            .map_err(|_| "engine thread is gone")?;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<EngineMsg>,
        msg: EngineMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EngineMsg::Crashed(m) => Err(format!("strategy panicked: {m}").into()),
        }
    }
}

/// Messages of the `FeedActor` and `VenueActor`: read their thread's counters.
#[derive(Debug)]
pub enum GatewayMsg {
    /// Reply with (published, dropped, orders received).
    Stats(RpcReplyPort<(u64, u64, u64)>),
}

/// Owner of the feed handler (simulator market data, fan-out to engines).
pub struct FeedActor;
/// Owner of the venue session (order intake, reports).
pub struct VenueActor;

macro_rules! gateway_actor {
    ($t:ty) => {
        impl Actor for $t {
            type Msg = GatewayMsg;
            type State = Arc<GatewayLive>;
            type Arguments = Arc<GatewayLive>;

            async fn pre_start(
                &self,
                _m: ActorRef<GatewayMsg>,
                live: Arc<GatewayLive>,
            ) -> Result<Arc<GatewayLive>, ActorProcessingErr> {
                Ok(live)
            }

            async fn handle(
                &self,
                _m: ActorRef<GatewayMsg>,
                msg: GatewayMsg,
                live: &mut Arc<GatewayLive>,
            ) -> Result<(), ActorProcessingErr> {
                let GatewayMsg::Stats(reply) = msg;
                let _ = reply.send((
                    live.md_published.load(Ordering::Relaxed),
                    live.md_dropped.load(Ordering::Relaxed),
                    live.orders_in.load(Ordering::Relaxed),
                ));
                Ok(())
            }
        }
    };
}
gateway_actor!(FeedActor);
gateway_actor!(VenueActor);

/// Messages of the `RiskShardActor`.
#[derive(Debug)]
pub enum RiskMsg {
    /// Engage the kill switch.
    Kill,
    /// Release the kill switch.
    Reset,
    /// Reply whether the kill switch is engaged.
    IsKilled(RpcReplyPort<bool>),
}

/// Owner of the node's risk shard: the kill switch (and, with a cluster, credit grants).
pub struct RiskShardActor;

impl Actor for RiskShardActor {
    type Msg = RiskMsg;
    type State = KillSwitch;
    type Arguments = KillSwitch;

    async fn pre_start(
        &self,
        _m: ActorRef<RiskMsg>,
        kill: KillSwitch,
    ) -> Result<KillSwitch, ActorProcessingErr> {
        Ok(kill)
    }

    async fn handle(
        &self,
        _m: ActorRef<RiskMsg>,
        msg: RiskMsg,
        kill: &mut KillSwitch,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RiskMsg::Kill => {
                tracing::error!("kill switch engaged: all strategies halted");
                kill.engage();
            }
            RiskMsg::Reset => kill.reset(),
            RiskMsg::IsKilled(reply) => {
                let _ = reply.send(kill.is_engaged());
            }
        }
        Ok(())
    }
}

/// Per-strategy supervision state held by the `NodeSupervisor`.
pub struct Supervised {
    pub(super) name: String,
    pub(super) control: mpsc::Sender<Control>,
    pub(super) factory: StrategyFactory,
    pub(super) crash: CrashTarget,
    pub(super) policy: RestartPolicy,
    pub(super) actor: Option<ActorRef<EngineMsg>>,
}

/// Messages of the `NodeSupervisor`.
pub enum NodeMsg {
    /// Restart the engine actor of strategy `i` (after its backoff).
    Restart(usize),
    /// Forward to the risk shard.
    Risk(RiskMsg),
}

/// Root of the node's actor tree.
pub struct NodeSupervisor;

/// State of the `NodeSupervisor`.
pub struct NodeState {
    engines: Vec<Supervised>,
    risk: Option<ActorRef<RiskMsg>>,
    clock: Clock,
}

/// Start-up arguments of the `NodeSupervisor`.
pub struct NodeArgs {
    pub(super) engines: Vec<Supervised>,
    pub(super) gateway: Arc<GatewayLive>,
    pub(super) kill: KillSwitch,
    pub(super) clock: Clock,
}

impl NodeSupervisor {
    async fn spawn_engine(
        myself: &ActorRef<NodeMsg>,
        s: &mut Supervised,
        restart: bool,
    ) -> Result<(), ActorProcessingErr> {
        let args = EngineActorArgs {
            control: s.control.clone(),
            factory: s.factory.clone(),
            crash: s.crash.clone(),
            restart,
        };
        let (actor, _) = Actor::spawn_linked(None, EngineActor, args, myself.get_cell()).await?;
        s.actor = Some(actor);
        Ok(())
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        Actor::spawn_linked(None, FeedActor, args.gateway.clone(), myself.get_cell()).await?;
        Actor::spawn_linked(None, VenueActor, args.gateway.clone(), myself.get_cell()).await?;
        let (risk, _) =
            Actor::spawn_linked(None, RiskShardActor, args.kill.clone(), myself.get_cell()).await?;
        let mut engines = args.engines;
        for s in engines.iter_mut() {
            Self::spawn_engine(&myself, s, false).await?;
        }
        Ok(NodeState {
            engines,
            risk: Some(risk),
            clock: args.clock,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Restart(i) => {
                if let Some(s) = state.engines.get_mut(i) {
                    Self::spawn_engine(&myself, s, true).await?;
                }
            }
            NodeMsg::Risk(m) => {
                if let Some(r) = &state.risk {
                    r.cast(m)?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, err) = evt else {
            return Ok(());
        };
        let Some(i) = state.engines.iter().position(|s| {
            s.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
        }) else {
            // A gateway or risk actor failing is not recoverable here: stop the node.
            tracing::error!(error = %err, "node actor failed");
            myself.stop(Some(format!("child failed: {err}")));
            return Ok(());
        };
        let s = &mut state.engines[i];
        s.actor = None;
        match s.policy.on_crash(state.clock.now()) {
            RestartDecision::RestartAfter(d) => {
                tracing::warn!(strategy = %s.name, backoff_ms = d / 1_000_000, "restarting strategy after backoff");
                myself.send_after(Duration::from_nanos(d), move || NodeMsg::Restart(i));
            }
            RestartDecision::Halt { crashes } => {
                let reason = format!("halted after {crashes} crashes; last: {err}");
                tracing::error!(strategy = %s.name, %reason, "strategy halted");
                let _ = s.control.send(Control::Halt(reason));
            }
        }
        Ok(())
    }
}

//! The model's side: berth-model's networks, the containers running, and the
//! outcome the last step must have had.

use std::collections::BTreeSet;

use berth_model::network::{Mode, Networks, Port, Refusal};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::transitions::{Outcome, Transition};

/// The reference state. The model knows each network's bridge by the
/// network's name; the assertions map berth's bridge names onto them.
#[derive(Debug, Clone, Default)]
pub struct RefState {
    /// The model.
    pub model: Networks,
    /// Containers whose process runs.
    pub running: BTreeSet<String>,
    /// What the last step must have come to.
    pub last: Option<Outcome>,
}

/// The reference state machine of the bridge/IP machine.
pub struct NetRef;

fn outcome(r: Result<(), Refusal>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(Refusal::NetworkExists(_)) => Outcome::NetworkExists,
        Err(Refusal::SubnetOverlaps(_)) => Outcome::Overlaps,
        Err(Refusal::BadGateway(_)) => Outcome::BadGateway,
        Err(Refusal::NoSuchNetwork(_)) => Outcome::NoSuchNetwork,
        Err(Refusal::NetworkInUse(_)) => Outcome::NetworkInUse,
        Err(Refusal::SubnetExhausted(_)) => Outcome::Exhausted,
        Err(Refusal::AddressUnavailable(_)) => Outcome::AddressUnavailable,
        Err(Refusal::AddressOutsideSubnet(_)) => Outcome::AddressOutside,
        Err(Refusal::AlreadyConnected(..)) => Outcome::AlreadyConnected,
        Err(Refusal::PortInUse(..)) => Outcome::PortInUse,
        Err(Refusal::NoFreePort(..)) => Outcome::NoFreePort,
        Err(Refusal::BadName(_)) => Outcome::BadName,
        Err(other) => Outcome::Other(format!("model: {other:?}")),
    }
}

/// The default network's name (Docker's).
pub const DEFAULT: &str = berth::network::DEFAULT;

/// The default network's subnet (berth's, which the machine's roots keep).
pub fn default_subnet() -> berth_model::network::Subnet {
    let s: berth::network::Subnet = berth::network::DEFAULT_SUBNET
        .parse()
        .expect("berth's default subnet");
    berth_model::network::Subnet::new(s.addr(), s.prefix())
}

/// Applies `t` to the model; returns the outcome it must have.
pub fn step(s: &mut RefState, t: &Transition) -> Outcome {
    let m = &mut s.model;
    match t {
        Transition::Create {
            name,
            subnet,
            gateway,
            fault,
        } => match subnet.or_else(|| m.free_subnet()) {
            // A create that fails after its checks leaves nothing.
            Some(sub) if fault.is_some() => match m.clone().create(name, name, sub, *gateway) {
                Ok(()) => Outcome::Fault,
                r => outcome(r),
            },
            Some(sub) => outcome(m.create(name, name, sub, *gateway)),
            None => Outcome::Other("no free subnet".into()),
        },
        Transition::Remove { name } => outcome(m.remove(name)),
        Transition::Run {
            container,
            network,
            ip,
            publish,
            fault,
        } => {
            // What a crashed container of this id held is given back first:
            // by berth's store when the run gets that far, by the engine (which
            // gives back all of a container that cannot start) when not.
            if m.is_gone(container) {
                let _ = m.remove_container(container);
            }
            // The default network is made by the first run that asks for it
            // (and stays, but for a refused run, which leaves nothing).
            let mut base = m.clone();
            if network == DEFAULT && base.network(DEFAULT).is_none() {
                let sub = default_subnet();
                if let Err(e) = base.create(DEFAULT, DEFAULT, sub, None) {
                    return outcome(Err(e));
                }
            }
            // Addresses first, then the port (a refused port undoes the run).
            let mut trial = base.clone();
            let mut r = trial.run(container, Mode::Bridge, Some(network), *ip);
            if let Some(p) = publish {
                for i in 0..p.count {
                    if r.is_err() {
                        break;
                    }
                    let port = Port {
                        host_ip: p.host_ip,
                        host_port: p.host_port.map_or(0, |h| h + i),
                        proto: p.proto,
                        container_port: 80 + i,
                    };
                    let (lo, hi) = super::reach::EPHEMERAL;
                    r = match p.host_port {
                        Some(_) => Ok(port),
                        None => trial.free_host_port(port, lo, hi),
                    }
                    .and_then(|port| trial.publish(container, port));
                }
            }
            if r.is_ok() && fault.is_some() {
                // A run that fails (after its addresses are recorded, or
                // after its veth is made) changes nothing of its own.
                *m = base;
                return Outcome::Fault;
            }
            if r.is_ok() {
                *m = trial;
                s.running.insert(container.clone());
            }
            outcome(r)
        }
        Transition::Connect {
            container,
            network,
            ip,
        } => {
            // berth (as Docker) looks the network up first.
            if m.network(network).is_none() {
                return Outcome::NoSuchNetwork;
            }
            outcome(m.connect(container, network, *ip))
        }
        Transition::Disconnect { container, network } => {
            if m.network(network).is_none() {
                return Outcome::NoSuchNetwork;
            }
            match m.disconnect(container, network) {
                Ok(()) => Outcome::Ok,
                // The model says "no such endpoint" as NoSuchContainer.
                Err(Refusal::NoSuchContainer(_)) => Outcome::NotConnected,
                Err(e) => outcome(Err(e)),
            }
        }
        Transition::Stop { container } => {
            s.running.remove(container);
            outcome(m.remove_container(container))
        }
        Transition::Crash { container } => {
            s.running.remove(container);
            outcome(m.crash(container))
        }
        Transition::Recover { container } => outcome(m.remove_container(container)),
    }
}

impl ReferenceStateMachine for NetRef {
    type State = RefState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<RefState> {
        let mut s = RefState::default();
        let (a, p) = super::sut::HOST_ADDRESS;
        s.model.host_subnet(berth_model::network::Subnet::new(a, p));
        Just(s).boxed()
    }

    fn transitions(state: &RefState) -> BoxedStrategy<Transition> {
        super::strategies::transitions(state)
    }

    fn apply(mut state: RefState, t: &Transition) -> RefState {
        let o = step(&mut state, t);
        state.last = Some(o);
        state
    }

    /// What shrinking may not break: steps on a container need it running,
    /// a run needs it not running, and a recovery a crash before it.
    fn preconditions(state: &RefState, t: &Transition) -> bool {
        match t {
            Transition::Run { container, .. } => !state.running.contains(container),
            Transition::Recover { container } => state.model.is_gone(container),
            Transition::Connect { container, .. }
            | Transition::Disconnect { container, .. }
            | Transition::Stop { container }
            | Transition::Crash { container } => state.running.contains(container),
            Transition::Create { .. } | Transition::Remove { .. } => true,
        }
    }
}

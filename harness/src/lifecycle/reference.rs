//! The model's side: berth-model's containers and the outcome the last step
//! must have had.

use berth_model::lifecycle::{Containers, Refusal, Status};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::transitions::{Outcome, Transition};

/// The reference state.
#[derive(Debug, Clone, Default)]
pub struct LifeState {
    /// The model.
    pub model: Containers,
    /// What the last step must have come to.
    pub last: Option<Outcome>,
}

/// The reference state machine of the lifecycle machine.
pub struct LifeRef;

/// A status as berth-runc writes it.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Stopped => "stopped",
    }
}

fn outcome(r: Result<(), Refusal>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(Refusal::Exists(_)) => Outcome::Exists,
        Err(Refusal::NotFound(_)) => Outcome::NotFound,
        Err(Refusal::BadState(_, _, s)) => Outcome::BadState(status_name(s).into()),
    }
}

/// Applies `t` to the model; returns the outcome it must have.
pub fn step(s: &mut LifeState, t: &Transition) -> Outcome {
    let m = &mut s.model;
    outcome(match t {
        Transition::Create(id) => m.create(id),
        Transition::Start(id) => m.start(id),
        Transition::Pause(id) => m.pause(id),
        Transition::Resume(id) => m.resume(id),
        Transition::Kill(id) => m.kill(id),
        Transition::Delete(id) => m.delete(id, false),
        Transition::ForceDelete(id) => m.delete(id, true),
        Transition::CreateFault(id, _) => {
            // Refused as a create is, or failed at the fault: nothing changes.
            let mut trial = m.clone();
            return match trial.create(id) {
                Ok(()) => Outcome::Fault,
                Err(e) => outcome(Err(e)),
            };
        }
    })
}

impl ReferenceStateMachine for LifeRef {
    type State = LifeState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<LifeState> {
        Just(LifeState::default()).boxed()
    }

    fn transitions(state: &LifeState) -> BoxedStrategy<Transition> {
        super::strategies::transitions(state)
    }

    fn apply(mut state: LifeState, t: &Transition) -> LifeState {
        let o = step(&mut state, t);
        state.last = Some(o);
        state
    }

    /// SIGKILL to a paused container is left out: a cgroup v1 freezer holds
    /// the signal until the container is thawed (v2 kills at once), so the
    /// status after it depends on the hierarchy, not on berth.
    fn preconditions(state: &LifeState, t: &Transition) -> bool {
        !matches!(t, Transition::Kill(id) if state.model.status(id) == Some(Status::Paused))
    }
}

//! Steps on three container names, every operation equally likely, so that
//! forbidden orders come up as often as allowed ones.

use proptest::prelude::*;

use super::reference::LifeState;
use super::transitions::Transition;

/// The container names of the model (berth-runc's ids add a per-case prefix).
pub const NAMES: [&str; 3] = ["c0", "c1", "c2"];

/// The steps of `create` where a fault can be injected.
pub const FAULTS: [&str; 4] = [
    "create.after-state",
    "create.after-clone",
    "create.after-cgroup",
    "create.after-limits",
];

/// The steps possible from any state.
pub fn transitions(_state: &LifeState) -> BoxedStrategy<Transition> {
    let name = || prop::sample::select(NAMES.to_vec()).prop_map(str::to_string);
    prop_oneof![
        3 => name().prop_map(Transition::Create),
        2 => name().prop_map(Transition::Start),
        1 => name().prop_map(Transition::Pause),
        1 => name().prop_map(Transition::Resume),
        1 => name().prop_map(Transition::Kill),
        1 => name().prop_map(Transition::Delete),
        1 => name().prop_map(Transition::ForceDelete),
        1 => (name(), prop::sample::select(FAULTS.to_vec()))
            .prop_map(|(n, f)| Transition::CreateFault(n, f)),
    ]
    .boxed()
}

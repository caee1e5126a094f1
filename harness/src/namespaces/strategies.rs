//! Containers on four names, each kind's namespace new, the host's or
//! another container's (dead ones included, to see the refusal).

use berth_model::namespaces::Kind;
use proptest::prelude::*;

use super::reference::NsState;
use super::transitions::{Source, Transition};

/// Container names.
pub const NAMES: [&str; 4] = ["c0", "c1", "c2", "c3"];

/// The kinds a container's config chooses (mount is always new).
pub const KINDS: [Kind; 5] = [Kind::Pid, Kind::Ipc, Kind::Uts, Kind::Net, Kind::Cgroup];

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        2 => Just(Source::Host),
        3 => Just(Source::New),
        2 => prop::sample::select(NAMES.to_vec()).prop_map(|n| Source::Join(n.to_string())),
    ]
}

/// The steps possible from any state.
pub fn transitions(_state: &NsState) -> BoxedStrategy<Transition> {
    let name = || prop::sample::select(NAMES.to_vec()).prop_map(str::to_string);
    prop_oneof![
        3 => (name(), prop::collection::vec(source(), KINDS.len())).prop_map(|(name, s)| {
            Transition::Run { name, ns: KINDS.into_iter().zip(s).collect() }
        }),
        2 => name().prop_map(Transition::Exec),
        1 => name().prop_map(Transition::Stop),
    ]
    .boxed()
}

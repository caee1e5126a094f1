//! Images and steps generated so that paths collide often: three names, three
//! levels, a few contents, modes and link targets. Layer entries that the model
//! refuses (an entry under a symlink, a hardlink to nothing) are left out of the
//! image as it is drawn, so every image is one both sides must accept (hostile
//! layers are the image tests' business, runtime/tests/images.rs).

use berth_model::union::{Body, Entry, Layer, Mtime, Node, Tree, Xattrs, apply};
use proptest::prelude::*;

use super::reference::UnionState;
use super::transitions::Transition;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// A path of one to three components.
pub fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        3 => (prop::sample::select(NAMES.to_vec()), prop::sample::select(NAMES.to_vec()))
            .prop_map(|(a, b)| format!("{a}/{b}")),
        1 => (
            prop::sample::select(NAMES.to_vec()),
            prop::sample::select(NAMES.to_vec()),
            prop::sample::select(NAMES.to_vec())
        )
            .prop_map(|(a, b, c)| format!("{a}/{b}/{c}")),
    ]
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["", "x", "hello", "hello world\n", "\u{0}\u{ff}bin"])
        .prop_map(|s| s.as_bytes().to_vec())
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o644, 0o600, 0o755, 0o700])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755, 0o700, 0o750])
}

/// The attribute names: trusted ones, which root may set on any file system
/// the machine runs on (the VMs' tmpfs takes no user ones before 6.6).
const XATTRS: [&str; 2] = ["trusted.a", "trusted.b"];

/// Values: empty, short, and one longer than the first buffer berth reads
/// them into.
fn xattr_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "1", "xyz"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(vec![b'v'; 300]),
    ]
}

/// Mostly none; else one or two.
fn xattrs() -> impl Strategy<Value = Xattrs> {
    prop_oneof![
        2 => Just(Xattrs::new()),
        1 => prop::collection::btree_map(
            prop::sample::select(XATTRS.to_vec()).prop_map(str::to_string),
            xattr_value(),
            1..3,
        ),
    ]
}

/// An owner: root's mostly, a user's, or one a tar header's octal field
/// cannot hold (a user namespace's range: PAX records).
fn owner() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        3 => Just((0, 0)),
        1 => Just((1000, 1000)),
        1 => Just((3_000_000, 3_000_001)),
    ]
}

/// An entry's time: whole seconds (two), or with a fraction (a PAX record).
fn mtime() -> impl Strategy<Value = Mtime> {
    prop::sample::select(vec![
        (1_700_000_000i64, 0u32),
        (1_600_000_000, 0),
        (1_650_000_000, 250_000_000),
    ])
    .prop_map(Some)
}

fn target() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "../b", "/c", "a/b", "/etc/passwd"]).prop_map(str::to_string)
}

fn entry() -> impl Strategy<Value = Entry> {
    let node = |name: String, n: Node| Entry {
        name,
        body: Body::Node(n),
    };
    prop_oneof![
        2 => (path(), dir_mode(), xattrs(), mtime(), owner()).prop_map(
            move |(p, mode, xattrs, mtime, owner)| node(p, Node::Dir { mode, xattrs, mtime, owner })
        ),
        4 => (path(), content(), file_mode(), xattrs(), mtime(), owner()).prop_map(
            move |(p, content, mode, xattrs, mtime, owner)| {
                node(p, Node::File { content, mode, xattrs, mtime, owner })
            }
        ),
        1 => (path(), target()).prop_map(move |(p, t)| node(p, Node::Symlink(t))),
        1 => path().prop_map(move |p| node(p, Node::Device('c', 1, 3))),
        1 => (path(), path()).prop_map(|(p, t)| Entry { name: p, body: Body::Hardlink(t) }),
        2 => path().prop_map(|p| {
            let (dir, name) = p.rsplit_once('/').unwrap_or(("", &p));
            let name = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
            Entry { name, body: Body::Node(Node::file(vec![], 0o644)) }
        }),
        1 => path().prop_map(|p| Entry {
            name: format!("{p}/.wh..wh..opq"),
            body: Body::Node(Node::file(vec![], 0o644)),
        }),
    ]
}

/// Keeps the entries of `drawn` that the model accepts on top of `below`.
fn accepted(below: &Tree, drawn: Vec<Entry>) -> Layer {
    let mut layer: Layer = Vec::new();
    for e in drawn {
        layer.push(e);
        if apply(below, &layer).is_err() {
            layer.pop();
        }
    }
    layer
}

/// An image: one to three layers of up to ten entries each.
pub fn image() -> impl Strategy<Value = Vec<Layer>> {
    prop::collection::vec(prop::collection::vec(entry(), 1..10), 1..4).prop_map(|drawn| {
        let mut tree = Tree::new();
        let mut layers = Vec::new();
        for d in drawn {
            let l = accepted(&tree, d);
            if let Ok(t) = apply(&tree, &l) {
                tree = t;
            }
            layers.push(l);
        }
        layers
    })
}

/// A path the container sees now, or any path.
fn some_path(state: &UnionState) -> BoxedStrategy<String> {
    let seen: Vec<String> = state.container.view().keys().cloned().collect();
    if seen.is_empty() {
        path().boxed()
    } else {
        prop_oneof![2 => prop::sample::select(seen), 1 => path()].boxed()
    }
}

/// A directory of the image the container no longer sees (made again, it
/// is opaque over the image's), else a path as [`some_path`] picks one.
fn gone_or_any(state: &UnionState) -> BoxedStrategy<String> {
    let view = state.container.view();
    let gone: Vec<String> = state
        .container
        .lower
        .iter()
        .filter(|(p, n)| matches!(n, Node::Dir { .. }) && !view.contains_key(*p))
        .map(|(p, _)| p.clone())
        .collect();
    if gone.is_empty() {
        some_path(state)
    } else {
        prop_oneof![1 => prop::sample::select(gone), 1 => some_path(state)].boxed()
    }
}

/// One of the case's images, mostly not the container's.
fn other_image(state: &UnionState) -> BoxedStrategy<usize> {
    let others: Vec<usize> = (0..state.images.len())
        .filter(|i| *i != state.current)
        .collect();
    if others.is_empty() {
        Just(state.current).boxed()
    } else {
        prop_oneof![4 => prop::sample::select(others), 1 => Just(state.current)].boxed()
    }
}

/// The steps possible from `state` (the preconditions then keep out those
/// the model does not describe).
pub fn transitions(state: &UnionState) -> BoxedStrategy<Transition> {
    let p = || some_path(state);
    prop_oneof![
        4 => (p(), content()).prop_map(|(path, content)| Transition::Write { path, content }),
        2 => (p(), content()).prop_map(|(path, content)| Transition::Append { path, content }),
        1 => (p(), prop::sample::select(vec![0o600, 0o644, 0o700, 0o755]))
            .prop_map(|(path, mode)| Transition::Chmod { path, mode }),
        2 => gone_or_any(state).prop_map(|path| Transition::Mkdir { path }),
        1 => (p(), target()).prop_map(|(path, target)| Transition::Symlink { path, target }),
        3 => p().prop_map(|path| Transition::Remove { path }),
        2 => p().prop_map(|path| Transition::Rmdir { path }),
        // rm -rf, often of a directory the image has: then a mkdir of it
        // makes an opaque directory over the image's.
        2 => p().prop_map(|path| Transition::RemoveAll { path }),
        2 => (p(), p()).prop_map(|(from, to)| Transition::Rename { from, to }),
        1 => (p(), owner()).prop_map(|(path, (uid, gid))| Transition::Chown { path, uid, gid }),
        2 => (p(), prop::sample::select(XATTRS.to_vec()), xattr_value())
            .prop_map(|(path, name, value)| Transition::SetXattr { path, name, value }),
        1 => (p(), prop::sample::select(XATTRS.to_vec()))
            .prop_map(|(path, name)| Transition::RemoveXattr { path, name }),
        2 => Just(Transition::Commit),
        1 => prop::sample::select(vec!["commit.after-blob", "commit.after-unpack"])
            .prop_map(Transition::CommitFault),
        // Image removal frees layers only off the container's own chain:
        // a container on an older image makes the newer ones removable.
        2 => other_image(state).prop_map(|which| Transition::Run { which }),
        2 => (other_image(state), any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(which, by_tag, force)| Transition::RemoveImage {
                which,
                by_tag: by_tag && which == 0,
                force,
            }),
        1 => any::<bool>().prop_map(|all| Transition::Prune { all }),
    ]
    .boxed()
}

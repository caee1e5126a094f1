//! The model's side: berth-model's container (its image's merged layers and
//! its upper layer), and the outcome the last step must have had.

use berth_model::union::{Container, Layer, Node, Refusal, Tree, merged, parent};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::transitions::{Outcome, Transition};

/// The reference state.
#[derive(Debug, Clone)]
pub struct UnionState {
    /// The image the case starts from, bottom layer first.
    pub image: Vec<Layer>,
    /// The container now running (after a commit, the one on the committed image).
    pub container: Container,
    /// How many commits were made.
    pub commits: usize,
    /// What the last step must have come to.
    pub last: Option<Outcome>,
}

/// The reference state machine of the union machine.
pub struct UnionRef;

/// The outcome kind of a model refusal.
pub fn outcome(r: Result<(), Refusal>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(Refusal::NotFound(_)) => Outcome::NotFound,
        Err(Refusal::Exists(_)) => Outcome::Exists,
        Err(Refusal::NotADirectory(_)) => Outcome::NotADirectory,
        Err(Refusal::IsADirectory(_)) => Outcome::IsADirectory,
        Err(Refusal::NotEmpty(_)) => Outcome::NotEmpty,
        Err(Refusal::CrossDevice(_)) => Outcome::CrossDevice,
        Err(Refusal::Invalid(_)) => Outcome::Invalid,
        Err(Refusal::NoAttribute(_)) => Outcome::NoData,
        Err(other) => Outcome::Other(format!("model: {other:?}")),
    }
}

/// Applies `t` to the model; returns the outcome it must have.
pub fn step(s: &mut UnionState, t: &Transition) -> Outcome {
    let c = &mut s.container;
    outcome(match t {
        Transition::Write { path, content } => c.write(path, content),
        Transition::Append { path, content } => c.append(path, content),
        Transition::Chmod { path, mode } => c.chmod(path, *mode),
        Transition::Mkdir { path } => c.mkdir(path),
        Transition::Symlink { path, target } => c.symlink(path, target),
        Transition::Remove { path } => c.remove(path),
        Transition::Rmdir { path } => c.rmdir(path),
        // rm -rf: what is below first, deepest first, then the path.
        Transition::RemoveAll { path } => {
            let view = c.view();
            let mut below: Vec<&String> = view
                .keys()
                .filter(|p| *p != path && berth_model::union::is_under(p, path))
                .collect();
            below.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
            below
                .into_iter()
                .chain(view.get_key_value(path).map(|(k, _)| k))
                .try_for_each(|p| match view.get(p) {
                    Some(Node::Dir { .. }) => c.rmdir(p),
                    _ => c.remove(p),
                })
                .and_then(|()| {
                    if view.contains_key(path) {
                        Ok(())
                    } else {
                        c.remove(path)
                    }
                })
        }
        Transition::SetXattr { path, name, value } => c.set_xattr(path, name, value),
        Transition::RemoveXattr { path, name } => c.remove_xattr(path, name),
        Transition::Rename { from, to } => c.rename(from, to),
        // A failed operation changes nothing.
        Transition::CommitFault(_) => return Outcome::Fault,
        Transition::Commit => {
            // The committed image is what the container saw; a new container
            // starts on it with nothing in its upper layer.
            *c = Container::new(c.view());
            s.commits += 1;
            Ok(())
        }
    })
}

/// Whether a directory on the way to `path` is a symlink: the kernel would
/// follow it, the model does not describe where to.
fn through_symlink(view: &Tree, path: &str) -> bool {
    let mut dir = parent(path);
    while !dir.is_empty() {
        if matches!(view.get(dir), Some(Node::Symlink(_))) {
            return true;
        }
        dir = parent(dir);
    }
    false
}

/// The file a name is (its first name, for a hardlink).
fn file_of<'a>(view: &'a Tree, path: &'a str) -> Option<&'a str> {
    match view.get(path) {
        Some(Node::Hardlink(first)) => Some(first),
        Some(Node::File { .. }) => Some(path),
        _ => None,
    }
}

impl ReferenceStateMachine for UnionRef {
    type State = UnionState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<UnionState> {
        super::strategies::image()
            .prop_filter_map("an image the model accepts", |image| {
                let lower = merged(&image).ok()?;
                Some(UnionState {
                    image,
                    container: Container::new(lower),
                    commits: 0,
                    last: None,
                })
            })
            .boxed()
    }

    fn transitions(state: &UnionState) -> BoxedStrategy<Transition> {
        super::strategies::transitions(state)
    }

    fn apply(mut state: UnionState, t: &Transition) -> UnionState {
        let o = step(&mut state, t);
        state.last = Some(o);
        state
    }

    /// Steps the model describes: no path through a symlink; no write, append
    /// or chmod through a symlink or into a device (the kernel would follow
    /// them), no extended attribute on either (the model gives them none); no rename between two names of one file (rename(2) does nothing
    /// then, and overlayfs may or may not see one file).
    fn preconditions(state: &UnionState, t: &Transition) -> bool {
        let view = state.container.view();
        if t.paths().iter().any(|p| through_symlink(&view, p)) {
            return false;
        }
        match t {
            Transition::Write { path, .. }
            | Transition::Append { path, .. }
            | Transition::Chmod { path, .. }
            | Transition::SetXattr { path, .. }
            | Transition::RemoveXattr { path, .. } => !matches!(
                view.get(path.as_str()),
                Some(Node::Symlink(_) | Node::Device(..))
            ),
            Transition::Rename { from, to } => {
                from == to || file_of(&view, from).is_none_or(|f| file_of(&view, to) != Some(f))
            }
            _ => true,
        }
    }
}

//! The model's side: berth-model's container (its image's merged layers and
//! its upper layer), and the outcome the last step must have had.

use berth_model::union::{Container, Layer, Node, Refusal, Tree, layer_size, merged, parent};
use proptest::prelude::*;
use proptest_state_machine::ReferenceStateMachine;

use super::transitions::{Outcome, Transition};

/// One of the case's images in the image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Still in the store.
    pub present: bool,
    /// Tagged `union:case` (only the loaded image ever is).
    pub tagged: bool,
    /// The size of each layer, bottom first (the bytes of its files).
    pub layer_sizes: Vec<u64>,
    /// What a container made from it sees.
    pub tree: Tree,
}

/// The reference state.
#[derive(Debug, Clone)]
pub struct UnionState {
    /// The image the case starts from, bottom layer first.
    pub image: Vec<Layer>,
    /// The container now running (after a commit, the one on the committed image).
    pub container: Container,
    /// How many commits were made.
    pub commits: usize,
    /// The images: the loaded one, then one per commit.
    pub images: Vec<Image>,
    /// The image the container is on.
    pub current: usize,
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
        Transition::Chown { path, uid, gid } => c.chown(path, *uid, *gid),
        Transition::SetXattr { path, name, value } => c.set_xattr(path, name, value),
        Transition::RemoveXattr { path, name } => c.remove_xattr(path, name),
        Transition::Rename { from, to } => c.rename(from, to),
        // A failed operation changes nothing.
        Transition::CommitFault(_) => return Outcome::Fault,
        Transition::Commit => {
            // The committed image is its parent's layers and one of the
            // upper directory; a new container starts on it with nothing
            // in its upper layer.
            let mut layer_sizes = s.images[s.current].layer_sizes.clone();
            layer_sizes.push(c.upper_size());
            let tree = c.committed();
            *c = Container::new(tree.clone());
            s.commits += 1;
            s.images.push(Image {
                present: true,
                tagged: false,
                layer_sizes,
                tree,
            });
            s.current = s.images.len() - 1;
            Ok(())
        }
        Transition::Run { which } => match s.images.get(*which) {
            Some(im) if im.present => {
                *c = Container::new(im.tree.clone());
                s.current = *which;
                Ok(())
            }
            _ => return Outcome::NoSuchImage,
        },
        Transition::RemoveImage {
            which,
            by_tag,
            force,
        } => return remove_image(s, *which, *by_tag, *force),
        Transition::Prune { all } => {
            // Untagged images (every one with -a) that no container uses.
            for (i, im) in s.images.iter_mut().enumerate() {
                if im.present && i != s.current && (*all || !im.tagged) {
                    im.present = false;
                    im.tagged = false;
                }
            }
            Ok(())
        }
    })
}

/// `berth rmi`, as berth documents it (Docker's rules): a name that names no
/// image is refused; an image the container uses is refused without `-f`,
/// and with it loses its tag but stays (Docker's dangling image) until
/// nothing uses it; any other image is deleted.
fn remove_image(s: &mut UnionState, which: usize, by_tag: bool, force: bool) -> Outcome {
    let used = which == s.current;
    let Some(im) = s.images.get_mut(which) else {
        return Outcome::Other(format!("model: no image {which}"));
    };
    let found = im.present && (!by_tag || im.tagged);
    if !found {
        return Outcome::NoSuchImage;
    }
    if used && !force {
        return Outcome::Conflict;
    }
    im.tagged = false;
    if !used {
        im.present = false;
    }
    Outcome::Ok
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
                let layer_sizes = image
                    .iter()
                    .map(layer_size)
                    .collect::<Result<_, _>>()
                    .ok()?;
                Some(UnionState {
                    image,
                    container: Container::new(lower.clone()),
                    commits: 0,
                    images: vec![Image {
                        present: true,
                        tagged: true,
                        layer_sizes,
                        tree: lower,
                    }],
                    current: 0,
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
            | Transition::Chown { path, .. }
            | Transition::SetXattr { path, .. }
            | Transition::RemoveXattr { path, .. } => !matches!(
                view.get(path.as_str()),
                Some(Node::Symlink(_) | Node::Device(..))
            ),
            Transition::Rename { from, to } => {
                from == to || file_of(&view, from).is_none_or(|f| file_of(&view, to) != Some(f))
            }
            // An image the case made (shrinking may take away the commit
            // that made it).
            Transition::RemoveImage { which, .. } | Transition::Run { which } => {
                *which < state.images.len()
            }
            _ => true,
        }
    }
}

//! What can happen, and what may come of it.

/// One step of the union machine: a file operation inside the container's
/// root, a commit of the container followed by a new container on the
/// committed image, or the removal of images.
#[derive(Debug, Clone)]
pub enum Transition {
    /// `open(O_CREAT|O_TRUNC)` and write.
    Write {
        /// the path, relative to the container's root
        path: String,
        /// what is written
        content: Vec<u8>,
    },
    /// `open(O_APPEND)` and write.
    Append {
        /// the path
        path: String,
        /// what is appended
        content: Vec<u8>,
    },
    /// `chmod`.
    Chmod {
        /// the path
        path: String,
        /// the permission bits
        mode: u32,
    },
    /// `mkdir` (0755).
    Mkdir {
        /// the path
        path: String,
    },
    /// `symlink`.
    Symlink {
        /// the link's path
        path: String,
        /// what it points to (never followed by the machine)
        target: String,
    },
    /// `unlink`.
    Remove {
        /// the path
        path: String,
    },
    /// `rmdir`.
    Rmdir {
        /// the path
        path: String,
    },
    /// `rm -rf`: a directory with everything in it (or a non-directory).
    RemoveAll {
        /// the path
        path: String,
    },
    /// `lchown`.
    Chown {
        /// the path
        path: String,
        /// the new uid
        uid: u32,
        /// the new gid
        gid: u32,
    },
    /// `lsetxattr`.
    SetXattr {
        /// the path
        path: String,
        /// the attribute's name
        name: &'static str,
        /// its value
        value: Vec<u8>,
    },
    /// `lremovexattr`.
    RemoveXattr {
        /// the path
        path: String,
        /// the attribute's name
        name: &'static str,
    },
    /// `rename`.
    Rename {
        /// the old path
        from: String,
        /// the new path
        to: String,
    },
    /// `berth commit`, then the container is replaced by a new one made from
    /// the committed image (its root mounted afresh from the layer store).
    Commit,
    /// The container is removed, and a new one made on one of the case's
    /// images (`berth rm`, `berth run IMAGE`): refused when the image is gone.
    Run {
        /// which image: 0 the loaded one, k the k-th commit's
        which: usize,
    },
    /// `berth rmi [-f]` of one of the case's images: the first (the loaded
    /// one, tagged `union:case`) or one a commit made.
    RemoveImage {
        /// which image: 0 the loaded one, k the k-th commit's
        which: usize,
        /// named by its tag (the loaded image while it has it), else by id
        by_tag: bool,
        /// `-f`
        force: bool,
    },
    /// `berth image prune [-a]`.
    Prune {
        /// `-a`: every image no container uses, not only untagged ones
        all: bool,
    },
    /// `berth commit` failing at an injected fault (`commit.after-blob`,
    /// `commit.after-unpack`): the container goes on, the image store is as
    /// it was.
    CommitFault(&'static str),
}

impl Transition {
    /// The paths the step names.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Transition::Write { path, .. }
            | Transition::Append { path, .. }
            | Transition::Chmod { path, .. }
            | Transition::Mkdir { path }
            | Transition::Symlink { path, .. }
            | Transition::Remove { path }
            | Transition::Rmdir { path }
            | Transition::RemoveAll { path }
            | Transition::Chown { path, .. }
            | Transition::SetXattr { path, .. }
            | Transition::RemoveXattr { path, .. } => vec![path],
            Transition::Rename { from, to } => vec![from, to],
            Transition::Commit
            | Transition::CommitFault(_)
            | Transition::Run { .. }
            | Transition::RemoveImage { .. }
            | Transition::Prune { .. } => vec![],
        }
    }
}

/// What came of a step: ok, or which error (errno).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Ok,
    /// ENOENT.
    NotFound,
    /// EEXIST.
    Exists,
    /// ENOTDIR.
    NotADirectory,
    /// EISDIR.
    IsADirectory,
    /// ENOTEMPTY.
    NotEmpty,
    /// EXDEV.
    CrossDevice,
    /// EINVAL (a directory moved into itself).
    Invalid,
    /// ENODATA (no such extended attribute).
    NoData,
    /// The image store refused: a container uses the image (Docker's conflict).
    Conflict,
    /// No image by that name.
    NoSuchImage,
    /// The injected fault, and nothing left of the failed operation.
    Fault,
    /// Anything else: never expected.
    Other(String),
}

//! What can happen, and what may come of it.

/// One step: an operation on one of a few container names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `create --bundle B ID`
    Create(String),
    /// `start ID`
    Start(String),
    /// `pause ID`
    Pause(String),
    /// `resume ID`
    Resume(String),
    /// `kill ID KILL`
    Kill(String),
    /// `delete ID`
    Delete(String),
    /// `delete --force ID`
    ForceDelete(String),
    /// `create` failing at an injected fault (`BERTH_FAULT=POINT:fail`):
    /// nothing may be left of it.
    CreateFault(String, &'static str),
}

impl Transition {
    /// The container the step is about.
    pub fn id(&self) -> &str {
        match self {
            Transition::Create(id)
            | Transition::Start(id)
            | Transition::Pause(id)
            | Transition::Resume(id)
            | Transition::Kill(id)
            | Transition::Delete(id)
            | Transition::ForceDelete(id)
            | Transition::CreateFault(id, _) => id,
        }
    }
}

/// What came of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// The id is taken.
    Exists,
    /// No such container.
    NotFound,
    /// Refused in this status ("created", "running", "paused", "stopped").
    BadState(String),
    /// The injected fault, and nothing left of the failed create.
    Fault,
    /// Anything else (the runtime's message): never expected.
    Other(String),
}

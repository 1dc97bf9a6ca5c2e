pub(crate) struct Placeholder;

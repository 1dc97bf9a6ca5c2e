//! One MicroVM.

//! Closed sets of named options (optimizers, schedules, normalisations, directions): the names
//! are what configs, logs and command lines use, so the library needs no command-line crate.

/// A closed set of named options.
pub trait Choice: Copy + 'static {
    /// Every option, in the order help texts list them.
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    /// The option named `name`, in any case (`Adam` is `adam`).
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// Implements [`Choice`] and `Display` (the name) for an enum of unit variants.
macro_rules! choice {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $crate::choice::Choice for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }
    };
}
pub(crate) use choice;

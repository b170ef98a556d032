//! The domain's states and kinds, as stored in their text columns: one enum each, so no code
//! spells them as string literals (a typo there would be a silent no-match in SQL).

macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text stored in the column.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value a column holds; `None` for text no version of the code wrote.
            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == raw)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for sea_orm::Value {
            fn from(v: $name) -> Self {
                v.as_str().into()
            }
        }
    };
}

stored_enum! {
    /// `rules.kind`: what makes a rule breach.
    RuleKind {
        /// Value above `threshold`; clears at or below `clear_threshold`.
        Above => "ABOVE",
        /// Value below `threshold`; clears at or above `clear_threshold`.
        Below => "BELOW",
        /// Change from the previous reading larger than `threshold`, either way.
        RateOfChange => "RATE_OF_CHANGE",
        /// No reading for `silence_seconds`.
        Silence => "SILENCE",
    }
}

stored_enum! {
    /// `alerts.state`.
    AlertState {
        Open => "OPEN",
        Resolved => "RESOLVED",
    }
}

stored_enum! {
    /// `deliveries.status`.
    DeliveryStatus {
        /// Not delivered yet (being tried, or waiting for a retry).
        Pending => "PENDING",
        Delivered => "DELIVERED",
        /// Refused for good (a 4xx, a refused destination) or out of attempts.
        Failed => "FAILED",
    }
}

stored_enum! {
    /// `workflow_runs.state`: running until every step is finished, then how it ended.
    RunState {
        Running => "RUNNING",
        /// Every step succeeded.
        Succeeded => "SUCCEEDED",
        /// A step is dead (requeueing it makes the run `RUNNING` again).
        Failed => "FAILED",
        /// A step was cancelled, none is dead.
        Cancelled => "CANCELLED",
    }
}

stored_enum! {
    /// `channels.kind`.
    ChannelKind {
        /// A signed POST to the channel's URL.
        Webhook => "WEBHOOK",
        /// Shown in the web app.
        InApp => "IN_APP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_text() {
        for v in RuleKind::ALL {
            assert_eq!(RuleKind::parse(v.as_str()), Some(*v));
        }
        for v in AlertState::ALL {
            assert_eq!(AlertState::parse(v.as_str()), Some(*v));
        }
        for v in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(v.as_str()), Some(*v));
        }
        for v in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(v.as_str()), Some(*v));
        }
        for v in RunState::ALL {
            assert_eq!(RunState::parse(v.as_str()), Some(*v));
        }
        assert_eq!(RuleKind::parse("above"), None, "stored text is exact");
    }
}

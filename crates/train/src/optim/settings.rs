//! `[fine_tuning.optimizer]` and `[source.optimizer]`: one variant per optimizer, tagged by `name`, each
//! with the options torch's optimizer takes and torch's defaults, written once in its `Default`. serde
//! fills what a config leaves out and refuses an option the optimizer does not take.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The optimizers ftcal runs, under torch.optim's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// `torch.optim.SGD` (momentum, dampening, Nesterov, L2 weight decay).
    Sgd,
    /// `torch.optim.Adam` (L2 weight decay added to the gradient).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    Adamw,
    /// `torch.optim.Adagrad`.
    Adagrad,
    /// `torch.optim.RMSprop`.
    Rmsprop,
    /// AdaBelief (Zhuang et al. 2020), as the `adabelief-pytorch` package 0.2.x with its defaults.
    Adabelief,
    /// `torch.optim.Adadelta`.
    Adadelta,
}

impl std::fmt::Display for OptimizerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
            Self::Adamw => "adamw",
            Self::Adagrad => "adagrad",
            Self::Rmsprop => "rmsprop",
            Self::Adabelief => "adabelief",
            Self::Adadelta => "adadelta",
        })
    }
}

/// An optimizer and its hyper-parameters, as a config table: `name = "sgd"` and the options that
/// optimizer takes. Options left out take PyTorch's default; an option it does not take is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerSettings {
    /// `torch.optim.SGD`.
    Sgd(Sgd),
    /// `torch.optim.Adam`.
    Adam(Adam),
    /// `torch.optim.AdamW`.
    Adamw(AdamW),
    /// `torch.optim.Adagrad`.
    Adagrad(Adagrad),
    /// `torch.optim.RMSprop`.
    Rmsprop(Rmsprop),
    /// `adabelief_pytorch.AdaBelief`.
    Adabelief(AdaBelief),
    /// `torch.optim.Adadelta`.
    Adadelta(Adadelta),
}

/// `torch.optim.SGD`'s options; L2 weight decay is added to the gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Momentum factor (torch: 0).
    pub momentum: f64,
    /// Dampening of the momentum (torch: 0; burn's default would be 0.1).
    pub dampening: f64,
    /// Nesterov momentum (torch: off).
    pub nesterov: bool,
    /// L2 weight decay (torch: 0).
    pub weight_decay: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Self {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.Adam`'s options; L2 weight decay is added to the gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// (β1, β2) (torch: (0.9, 0.999)).
    pub betas: [f64; 2],
    /// ε of the denominator (torch: 1e-8).
    pub eps: f64,
    /// L2 weight decay (torch: 0).
    pub weight_decay: f64,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.AdamW`'s options; weight decay is decoupled (the parameter shrinks by `lr·wd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamW {
    /// (β1, β2) (torch: (0.9, 0.999)).
    pub betas: [f64; 2],
    /// ε of the denominator (torch: 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (torch: 1e-2).
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// `torch.optim.Adagrad`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adagrad {
    /// Learning-rate decay per step (torch: 0).
    pub lr_decay: f64,
    /// The accumulator's initial value (torch: 0).
    pub initial_accumulator_value: f64,
    /// ε of the denominator (torch: 1e-10).
    pub eps: f64,
    /// L2 weight decay (torch: 0).
    pub weight_decay: f64,
}

impl Default for Adagrad {
    fn default() -> Self {
        Self {
            lr_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.RMSprop`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rmsprop {
    /// Smoothing constant α (torch: 0.99).
    pub alpha: f64,
    /// ε of the denominator (torch: 1e-8).
    pub eps: f64,
    /// Momentum factor (torch: 0).
    pub momentum: f64,
    /// Normalise by the variance estimate rather than the second moment (torch: off).
    pub centered: bool,
    /// L2 weight decay (torch: 0).
    pub weight_decay: f64,
}

impl Default for Rmsprop {
    fn default() -> Self {
        Self {
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            centered: false,
            weight_decay: 0.0,
        }
    }
}

/// AdaBelief's options, as `adabelief-pytorch` 0.2.x with its defaults for the rest: decoupled weight
/// decay (`weight_decouple=True`, `fixed_decay=False`), the rectified update (`rectify=True`) that falls
/// back to SGD with momentum while the variance estimate is too young (`degenerated_to_sgd=True`), no
/// AMSGrad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaBelief {
    /// (β1, β2) (the package: (0.9, 0.999)).
    pub betas: [f64; 2],
    /// ε, added to the variance estimate and to the denominator (the package: 1e-16).
    pub eps: f64,
    /// Decoupled weight decay (the package: 0).
    pub weight_decay: f64,
}

impl Default for AdaBelief {
    fn default() -> Self {
        Self {
            betas: [0.9, 0.999],
            eps: 1e-16,
            weight_decay: 0.0,
        }
    }
}

/// `torch.optim.Adadelta`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adadelta {
    /// Decay of the running averages ρ (torch: 0.9).
    pub rho: f64,
    /// ε inside the square roots (torch: 1e-6).
    pub eps: f64,
    /// L2 weight decay (torch: 0).
    pub weight_decay: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Self {
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerSettings {
    /// SGD with the given momentum, Nesterov and weight decay (dampening 0).
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Self::Sgd(Sgd {
            momentum,
            nesterov,
            weight_decay,
            ..Sgd::default()
        })
    }

    /// Which optimizer.
    pub fn name(&self) -> OptimizerName {
        match self {
            Self::Sgd(_) => OptimizerName::Sgd,
            Self::Adam(_) => OptimizerName::Adam,
            Self::Adamw(_) => OptimizerName::Adamw,
            Self::Adagrad(_) => OptimizerName::Adagrad,
            Self::Rmsprop(_) => OptimizerName::Rmsprop,
            Self::Adabelief(_) => OptimizerName::Adabelief,
            Self::Adadelta(_) => OptimizerName::Adadelta,
        }
    }

    /// The names of the per-parameter buffers the optimizer keeps (torch's state keys), besides `step`,
    /// in the order the update rules keep them.
    pub fn buffer_names(&self) -> Vec<&'static str> {
        match self {
            Self::Sgd(sgd) if sgd.momentum != 0.0 => vec!["momentum_buffer"],
            Self::Sgd(_) => vec![],
            Self::Adam(_) | Self::Adamw(_) => vec!["exp_avg", "exp_avg_sq"],
            Self::Adabelief(_) => vec!["exp_avg", "exp_avg_var"],
            Self::Adagrad(_) => vec!["sum"],
            Self::Rmsprop(rmsprop) => {
                let mut names = vec!["square_avg"];
                if rmsprop.momentum > 0.0 {
                    names.push("momentum_buffer");
                }
                if rmsprop.centered {
                    names.push("grad_avg");
                }
                names
            }
            Self::Adadelta(_) => vec!["square_avg", "acc_delta"],
        }
    }

    /// How many state tensors of a parameter's size the optimizer keeps (momentum buffers, moment
    /// estimates), for the disk estimate of its checkpoints.
    pub fn state_tensors_per_parameter(&self) -> usize {
        self.buffer_names().len()
    }

    /// Range checks, each error naming `key.<option>`: torch's own, plus those that only catch typos (a
    /// negative dampening, a smoothing constant above 1, ε of 0) rather than forbid a meaningful setting.
    pub fn validate(&self, key: &str) -> Result<(), TrainError> {
        let check = Check { key };
        match self {
            Self::Sgd(sgd) => {
                check.unit("momentum", sgd.momentum)?;
                check.unit("dampening", sgd.dampening)?;
                if sgd.nesterov && (sgd.momentum <= 0.0 || sgd.dampening != 0.0) {
                    return Err(check.error(
                        "nesterov",
                        format!(
                            "Nesterov momentum needs momentum > 0 and dampening 0 (as torch.optim.SGD), but momentum \
                             is {} and dampening {}: set `momentum`, or `nesterov = false`",
                            sgd.momentum, sgd.dampening
                        ),
                    ));
                }
                check.at_least_zero("weight_decay", sgd.weight_decay)
            }
            Self::Adam(Adam {
                betas,
                eps,
                weight_decay,
            })
            | Self::Adamw(AdamW {
                betas,
                eps,
                weight_decay,
            })
            | Self::Adabelief(AdaBelief {
                betas,
                eps,
                weight_decay,
            }) => {
                check.betas(*betas)?;
                check.eps(*eps)?;
                check.at_least_zero("weight_decay", *weight_decay)
            }
            Self::Adagrad(adagrad) => {
                check.at_least_zero("lr_decay", adagrad.lr_decay)?;
                check.at_least_zero("initial_accumulator_value", adagrad.initial_accumulator_value)?;
                check.eps(adagrad.eps)?;
                check.at_least_zero("weight_decay", adagrad.weight_decay)
            }
            Self::Rmsprop(rmsprop) => {
                check.unit("alpha", rmsprop.alpha)?;
                check.eps(rmsprop.eps)?;
                check.unit("momentum", rmsprop.momentum)?;
                check.at_least_zero("weight_decay", rmsprop.weight_decay)
            }
            Self::Adadelta(adadelta) => {
                check.unit("rho", adadelta.rho)?;
                check.eps(adadelta.eps)?;
                check.at_least_zero("weight_decay", adadelta.weight_decay)
            }
        }
    }
}

/// The range checks of [`OptimizerSettings::validate`], naming the options under `key`.
struct Check<'a> {
    key: &'a str,
}

impl Check<'_> {
    fn error(&self, option: &str, message: String) -> TrainError {
        let key = if self.key.is_empty() {
            option.to_string()
        } else {
            format!("{}.{option}", self.key)
        };
        TrainError::config(key, message)
    }

    fn at_least_zero(&self, option: &str, value: f64) -> Result<(), TrainError> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(self.error(option, format!("is {value}; it must be a finite number ≥ 0")))
        }
    }

    fn unit(&self, option: &str, value: f64) -> Result<(), TrainError> {
        if (0.0..=1.0).contains(&value) {
            Ok(())
        } else {
            Err(self.error(option, format!("is {value}; it must lie in [0, 1]")))
        }
    }

    fn eps(&self, eps: f64) -> Result<(), TrainError> {
        if eps.is_finite() && eps > 0.0 {
            Ok(())
        } else {
            Err(self.error("eps", format!("is {eps}; it must be a finite number > 0")))
        }
    }

    fn betas(&self, betas: [f64; 2]) -> Result<(), TrainError> {
        for (index, beta) in betas.into_iter().enumerate() {
            if !(0.0..1.0).contains(&beta) {
                return Err(self.error(
                    "betas",
                    format!("β{} is {beta}; each beta must lie in [0, 1)", index + 1),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OptimizerSettings, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    fn config_error(settings: &OptimizerSettings) -> (String, String) {
        match settings.validate("fine_tuning.optimizer") {
            Err(TrainError::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn options_left_out_take_torchs_defaults() {
        let expected = [
            (
                "sgd",
                OptimizerSettings::Sgd(Sgd {
                    momentum: 0.0,
                    dampening: 0.0,
                    nesterov: false,
                    weight_decay: 0.0,
                }),
            ),
            (
                "adam",
                OptimizerSettings::Adam(Adam {
                    betas: [0.9, 0.999],
                    eps: 1e-8,
                    weight_decay: 0.0,
                }),
            ),
            (
                "adamw",
                OptimizerSettings::Adamw(AdamW {
                    betas: [0.9, 0.999],
                    eps: 1e-8,
                    weight_decay: 1e-2,
                }),
            ),
            (
                "adagrad",
                OptimizerSettings::Adagrad(Adagrad {
                    lr_decay: 0.0,
                    initial_accumulator_value: 0.0,
                    eps: 1e-10,
                    weight_decay: 0.0,
                }),
            ),
            (
                "rmsprop",
                OptimizerSettings::Rmsprop(Rmsprop {
                    alpha: 0.99,
                    eps: 1e-8,
                    momentum: 0.0,
                    centered: false,
                    weight_decay: 0.0,
                }),
            ),
            (
                "adabelief",
                OptimizerSettings::Adabelief(AdaBelief {
                    betas: [0.9, 0.999],
                    eps: 1e-16,
                    weight_decay: 0.0,
                }),
            ),
            (
                "adadelta",
                OptimizerSettings::Adadelta(Adadelta {
                    rho: 0.9,
                    eps: 1e-6,
                    weight_decay: 0.0,
                }),
            ),
        ];
        for (name, settings) in expected {
            assert_eq!(parse(&format!("name = \"{name}\"")).unwrap(), settings, "{name}");
            assert_eq!(settings.name().to_string(), name);
            settings.validate("k").unwrap();
        }
    }

    #[test]
    fn what_a_config_sets_is_kept_and_written_back_whole() {
        let parsed = parse("name = \"sgd\"\nmomentum = 0.9\nnesterov = true\nweight_decay = 5e-4\n").unwrap();
        assert_eq!(parsed, OptimizerSettings::sgd(0.9, true, 5e-4));
        let adam = parse("name = \"adam\"\nbetas = [0.8, 0.99]\n").unwrap();
        let OptimizerSettings::Adam(options) = &adam else {
            panic!("{adam:?}")
        };
        assert_eq!((options.betas, options.eps), ([0.8, 0.99], 1e-8));
        // A run directory's config.toml holds every option, so that a later default cannot change it.
        let written = toml::to_string(&adam).unwrap();
        assert_eq!(
            written,
            "name = \"adam\"\nbetas = [0.8, 0.99]\neps = 0.00000001\nweight_decay = 0.0\n"
        );
        assert_eq!(parse(&written).unwrap(), adam);
    }

    #[test]
    fn an_option_the_optimizer_does_not_take_is_an_error_listing_those_it_takes() {
        let error = parse("name = \"sgd\"\nmomentum = 0.9\nbetas = [0.9, 0.999]\n").unwrap_err();
        assert!(
            error.contains(
                "unknown field `betas`, expected one of `momentum`, `dampening`, `nesterov`, `weight_decay`"
            ),
            "{error}"
        );
        for (name, option) in [
            ("adam", "momentum"),
            ("adamw", "nesterov"),
            ("adagrad", "rho"),
            ("rmsprop", "dampening"),
            ("adadelta", "alpha"),
            ("adabelief", "centered"),
            ("sgd", "lr_decay"),
            ("sgd", "initial_accumulator_value"),
            ("sgd", "eps"),
        ] {
            let error = parse(&format!("name = \"{name}\"\n{option} = 0.1\n")).unwrap_err();
            assert!(
                error.contains(&format!("unknown field `{option}`")),
                "{name}: {error}"
            );
        }
        let error = parse("name = \"lion\"\n").unwrap_err();
        assert!(error.contains("unknown variant `lion`"), "{error}");
        assert!(
            parse("momentum = 0.9\n")
                .unwrap_err()
                .contains("missing field `name`")
        );
    }

    #[test]
    fn out_of_range_values_are_errors_naming_the_option() {
        let cases = [
            ("name = \"adam\"\nweight_decay = -1e-4", "weight_decay"),
            ("name = \"sgd\"\nweight_decay = nan", "weight_decay"),
            ("name = \"sgd\"\nmomentum = -0.9", "momentum"),
            ("name = \"sgd\"\nmomentum = 0.9\ndampening = -0.1", "dampening"),
            ("name = \"sgd\"\nnesterov = true", "nesterov"),
            (
                "name = \"sgd\"\nmomentum = 0.9\nnesterov = true\ndampening = 0.1",
                "nesterov",
            ),
            ("name = \"adam\"\nbetas = [1.0, 0.999]", "betas"),
            ("name = \"adabelief\"\nbetas = [0.9, -0.1]", "betas"),
            ("name = \"adamw\"\neps = 0.0", "eps"),
            ("name = \"rmsprop\"\neps = -1e-8", "eps"),
            ("name = \"rmsprop\"\nalpha = 1.5", "alpha"),
            ("name = \"rmsprop\"\nmomentum = -0.5", "momentum"),
            ("name = \"adadelta\"\nrho = -0.1", "rho"),
            ("name = \"adagrad\"\nlr_decay = -0.1", "lr_decay"),
            (
                "name = \"adagrad\"\ninitial_accumulator_value = -1.0",
                "initial_accumulator_value",
            ),
        ];
        for (text, option) in cases {
            let (key, message) = config_error(&parse(text).unwrap());
            assert_eq!(
                key,
                format!("fine_tuning.optimizer.{option}"),
                "{text}: {message}"
            );
        }
        let (_, message) = config_error(&parse("name = \"sgd\"\nnesterov = true").unwrap());
        assert!(
            message.contains("needs momentum > 0 and dampening 0"),
            "{message}"
        );
        // torch accepts these, and so does ftcal.
        OptimizerSettings::sgd(0.9, true, 0.0).validate("k").unwrap();
        parse("name = \"adam\"\nbetas = [0.0, 0.0]")
            .unwrap()
            .validate("k")
            .unwrap();
        let Err(TrainError::Config { key, .. }) = parse("name = \"adam\"\neps = 0.0").unwrap().validate("")
        else {
            panic!("ε = 0 is refused")
        };
        assert_eq!(key, "eps", "an option without an enclosing key is named alone");
    }
}

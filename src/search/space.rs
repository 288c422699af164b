//! Search spaces for hyperparameter sweeps beyond a grid: each parameter a distribution
//! (log-uniform, uniform, integers, or a choice among values), sampled into trials by the
//! engine's own [`Rng`], so the same seed gives the same trials, bit for bit, on every machine.
//! That is why the logarithm and exponential of log-uniform sampling are computed here from
//! additions and multiplications (exactly rounded everywhere) rather than by the platform's libm,
//! and why sampled values are rounded to [`SIGNIFICANT_DIGITS`] by exact decimal formatting.
//! The parameters' valid ranges are not restated: a space is checked by applying its extremes to
//! a [`TrainConfig`] and asking it to validate itself.

use std::fmt;

use crate::choice::Choice;
use crate::nn::Architecture;
use crate::rng::Rng;
use crate::train::{OptimizerKind, TrainConfig};

/// Sampled floats keep this many significant digits (`lr=0.01235`), so run names and params
/// read well; 9,000 values per decade are plenty for a search.
pub const SIGNIFICANT_DIGITS: usize = 4;

/// A hyperparameter a search can vary, named as its `engine train` flag without the dashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Lr,
    WeightDecay,
    Dropout,
    Momentum,
    BatchSize,
    Epochs,
    Hidden,
    Optimizer,
    Model,
}

/// What kind of values a parameter takes, which decides the distributions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Layers,
    Optimizer,
    Model,
}

impl Param {
    /// Every parameter, in the order trials draw them (so the order of `--space` flags does not
    /// change the trials).
    pub const ALL: [Param; 9] = [
        Param::Lr,
        Param::WeightDecay,
        Param::Dropout,
        Param::Momentum,
        Param::BatchSize,
        Param::Epochs,
        Param::Hidden,
        Param::Optimizer,
        Param::Model,
    ];

    /// The name in a space (`weight-decay`), that of the `engine train` flag.
    pub fn name(self) -> &'static str {
        match self {
            Param::Lr => "lr",
            Param::WeightDecay => "weight-decay",
            Param::Dropout => "dropout",
            Param::Momentum => "momentum",
            Param::BatchSize => "batch-size",
            Param::Epochs => "epochs",
            Param::Hidden => "hidden",
            Param::Optimizer => "optimizer",
            Param::Model => "model",
        }
    }

    /// The run param it is recorded as ([`TrainConfig::params`]).
    pub fn config_key(self) -> &'static str {
        match self {
            Param::Lr => "learning_rate",
            Param::WeightDecay => "weight_decay",
            Param::BatchSize => "batch_size",
            other => other.name(),
        }
    }

    /// The parameter named `name`; `_` may stand for `-`, and `learning-rate` for `lr`.
    pub fn from_name(name: &str) -> Option<Param> {
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        if name == "learning-rate" {
            return Some(Param::Lr);
        }
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    fn kind(self) -> Kind {
        match self {
            Param::Lr | Param::WeightDecay | Param::Dropout | Param::Momentum => Kind::Float,
            Param::BatchSize | Param::Epochs => Kind::Int,
            Param::Hidden => Kind::Layers,
            Param::Optimizer => Kind::Optimizer,
            Param::Model => Kind::Model,
        }
    }

    /// The distributions this parameter accepts, for error messages.
    fn accepts(self) -> &'static str {
        match self.kind() {
            Kind::Float => "loguniform, uniform or choice",
            Kind::Int => "int or choice",
            _ => "choice",
        }
    }

    /// How a trial's name shows it (`bs=64`).
    fn short_name(self) -> &'static str {
        match self {
            Param::BatchSize => "bs",
            Param::WeightDecay => "wd",
            other => other.name(),
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(usize),
    /// An MLP's hidden layer sizes.
    Layers(Vec<usize>),
    Optimizer(OptimizerKind),
    Model(Architecture),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Float(x) => write!(f, "{x}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Layers(sizes) => f.write_str(&sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
            Value::Optimizer(o) => write!(f, "{o}"),
            Value::Model(m) => write!(f, "{m}"),
        }
    }
}

impl Value {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Float(x) => (*x).into(),
            Value::Int(n) => (*n).into(),
            Value::Layers(sizes) => sizes.clone().into(),
            other => other.to_string().into(),
        }
    }
}

/// How a parameter is drawn. Ranges include both ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Uniform in `[ln low, ln high]`: as many draws between 1e-3 and 1e-2 as between 1e-2 and
    /// 1e-1. Needs `0 < low < high`.
    LogUniform { low: f64, high: f64 },
    /// Uniform in `[low, high]`, `low < high`.
    Uniform { low: f64, high: f64 },
    /// An integer in `low..=high`, each equally likely, `low < high`.
    Int { low: usize, high: usize },
    /// One of the values, each equally likely.
    Choice(Vec<Value>),
}

impl Distribution {
    fn name(&self) -> &'static str {
        match self {
            Distribution::LogUniform { .. } => "loguniform",
            Distribution::Uniform { .. } => "uniform",
            Distribution::Int { .. } => "int",
            Distribution::Choice(_) => "choice",
        }
    }

    /// The values that bound every draw: the ends of a range, or every choice.
    fn extremes(&self) -> Vec<Value> {
        match self {
            Distribution::LogUniform { low, high } | Distribution::Uniform { low, high } => {
                vec![Value::Float(*low), Value::Float(*high)]
            }
            Distribution::Int { low, high } => vec![Value::Int(*low), Value::Int(*high)],
            Distribution::Choice(values) => values.clone(),
        }
    }

    fn sample(&self, rng: &mut Rng) -> Value {
        match self {
            Distribution::LogUniform { low, high } => {
                let (a, b) = (portable_ln(*low), portable_ln(*high));
                Value::Float(round_within(portable_exp(a + (b - a) * unit_f64(rng)), *low, *high))
            }
            Distribution::Uniform { low, high } => {
                Value::Float(round_within(low + (high - low) * unit_f64(rng), *low, *high))
            }
            Distribution::Int { low, high } => Value::Int(low + rng.below(high - low + 1)),
            Distribution::Choice(values) => values[rng.below(values.len())].clone(),
        }
    }

    /// `loguniform(0.001,0.3)`, `choice(256|512,512)`: what [`SearchSpace::parse`] reads back.
    fn args(&self) -> String {
        match self {
            Distribution::LogUniform { low, high } | Distribution::Uniform { low, high } => format!("{low},{high}"),
            Distribution::Int { low, high } => format!("{low},{high}"),
            Distribution::Choice(values) => {
                let sep = if matches!(values.first(), Some(Value::Layers(_))) { "|" } else { "," };
                values.iter().map(Value::to_string).collect::<Vec<_>>().join(sep)
            }
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.args())
    }
}

/// Why a space was refused. Messages say what is wrong and what is expected; the caller adds
/// which flag or file it came from.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpaceError {
    #[error("'{0}' is not NAME=DISTRIBUTION(ARGS), e.g. lr=loguniform(1e-3,0.3)")]
    Syntax(String),
    #[error("unknown parameter '{0}' (expected one of {list})", list = param_list())]
    UnknownParam(String),
    #[error("unknown distribution '{name}' for {param} (expected {})", param.accepts())]
    UnknownDistribution { param: Param, name: String },
    #[error("{param} takes {}, not {dist}", param.accepts())]
    WrongDistribution { param: Param, dist: &'static str },
    #[error("{param}: {dist} takes two numbers (low,high), got {got}")]
    Arity { param: Param, dist: &'static str, got: usize },
    #[error("{param}: '{value}' is not {expected}")]
    BadValue { param: Param, value: String, expected: &'static str },
    #[error("{param}: the range is empty (low = high = {value}); for a fixed value use choice({value})")]
    EmptyRange { param: Param, value: String },
    #[error("{param}: low {low} > high {high}")]
    Reversed { param: Param, low: String, high: String },
    #[error("{param}: a log range needs 0 < low, got low {low}")]
    LogNotPositive { param: Param, low: f64 },
    #[error("{param}: choice() lists no values")]
    EmptyChoice { param: Param },
    #[error("{0} is given twice")]
    Duplicate(Param),
    #[error("{param}={dist}: {why}")]
    OutOfDomain { param: Param, dist: String, why: String },
    #[error("hidden sets the MLP's layers and the model is cnn, whose widths are fixed: drop hidden or add model")]
    HiddenForCnn,
    #[error("the space is empty")]
    Empty,
    #[error("{0}")]
    Json(String),
}

fn param_list() -> String {
    Param::ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// The parameters a search varies, each with its distribution, in [`Param::ALL`] order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpace {
    dims: Vec<(Param, Distribution)>,
}

impl SearchSpace {
    /// The parameters and their distributions, in draw order.
    pub fn dims(&self) -> &[(Param, Distribution)] {
        &self.dims
    }

    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// Adds one parameter; a parameter given twice is refused.
    pub fn insert(&mut self, param: Param, dist: Distribution) -> Result<(), SpaceError> {
        if self.dims.iter().any(|(p, _)| *p == param) {
            return Err(SpaceError::Duplicate(param));
        }
        let at = self.dims.partition_point(|(p, _)| *p < param);
        self.dims.insert(at, (param, dist));
        Ok(())
    }

    /// Adds one `NAME=DISTRIBUTION(ARGS)` expression, e.g. `lr=loguniform(1e-3,0.3)`,
    /// `batch-size=choice(64,128)`, `epochs=int(1,5)` or `hidden=choice(256|512,512)` (an
    /// architecture's sizes separated by commas, the architectures by `|`).
    pub fn add_expression(&mut self, expression: &str) -> Result<(), SpaceError> {
        let syntax = || SpaceError::Syntax(expression.to_string());
        let (name, rest) = expression.split_once('=').ok_or_else(syntax)?;
        let param = Param::from_name(name).ok_or_else(|| SpaceError::UnknownParam(name.trim().to_string()))?;
        let (dist, args) = rest.trim().split_once('(').ok_or_else(syntax)?;
        let args = args.trim_end().strip_suffix(')').ok_or_else(syntax)?;
        let sep = if param == Param::Hidden && dist.trim() == "choice" { '|' } else { ',' };
        let args: Vec<String> =
            if args.trim().is_empty() { Vec::new() } else { args.split(sep).map(|a| a.trim().to_string()).collect() };
        self.insert(param, parse_distribution(param, dist.trim(), &args)?)
    }

    /// Parses repeated expressions ([`SearchSpace::add_expression`]).
    pub fn parse<S: AsRef<str>>(expressions: &[S]) -> Result<SearchSpace, SpaceError> {
        let mut space = SearchSpace::default();
        for e in expressions {
            space.add_expression(e.as_ref())?;
        }
        Ok(space)
    }

    /// Adds the parameters of a JSON object, each either an expression's right-hand side
    /// (`"lr": "loguniform(1e-3,0.3)"`) or an object of one distribution and its arguments
    /// (`"lr": {"loguniform": [0.001, 0.3]}`, `"hidden": {"choice": [[256], [512, 512]]}`).
    pub fn add_json(&mut self, text: &str) -> Result<(), SpaceError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SpaceError::Json(format!("not valid JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| {
            SpaceError::Json(r#"expected an object like {"lr": {"loguniform": [0.001, 0.3]}}"#.into())
        })?;
        for (name, spec) in object {
            let param = Param::from_name(name).ok_or_else(|| SpaceError::UnknownParam(name.clone()))?;
            let single_entry = spec.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next());
            match (spec, single_entry) {
                (serde_json::Value::String(s), _) => self.add_expression(&format!("{name}={s}"))?,
                (_, Some((dist, args))) => {
                    let args = args.as_array().ok_or_else(|| {
                        SpaceError::Json(format!("{param}: the arguments of {dist} must be a list, got {args}"))
                    })?;
                    let args: Vec<String> = args.iter().map(json_arg).collect();
                    self.insert(param, parse_distribution(param, dist, &args)?)?;
                }
                (other, None) => {
                    return Err(SpaceError::Json(format!(
                        r#"{param}: expected "loguniform(1e-3,0.3)" or {{"loguniform": [0.001, 0.3]}}, got {other}"#
                    )));
                }
            }
        }
        Ok(())
    }

    /// The space as JSON, in the object form [`SearchSpace::add_json`] reads.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (param, dist) in &self.dims {
            let args: Vec<serde_json::Value> = match dist {
                Distribution::LogUniform { low, high } | Distribution::Uniform { low, high } => {
                    vec![(*low).into(), (*high).into()]
                }
                Distribution::Int { low, high } => vec![(*low).into(), (*high).into()],
                Distribution::Choice(values) => values.iter().map(Value::to_json).collect(),
            };
            object.insert(param.name().into(), serde_json::json!({ dist.name(): args }));
        }
        object.into()
    }

    /// Refuses a space that would train a config `base` could not: each range's ends and each
    /// choice are applied to `base` and validated as `engine train` validates its flags, and
    /// hidden layers for a CNN (without a model choice) are refused. `base.hidden` holds the
    /// MLP's layers as for [`Trial::apply`]; `available` is the memory in bytes the trials may
    /// need (see [`TrainConfig::validate_within`]).
    pub fn check(&self, base: &TrainConfig, available: Option<u64>) -> Result<(), SpaceError> {
        if self.dims.is_empty() {
            return Err(SpaceError::Empty);
        }
        let has = |param| self.dims.iter().any(|(p, _)| *p == param);
        if has(Param::Hidden) && !has(Param::Model) && base.model == Architecture::Cnn {
            return Err(SpaceError::HiddenForCnn);
        }
        for (param, dist) in &self.dims {
            for value in dist.extremes() {
                let trial = Trial { values: vec![(*param, value)] };
                trial.apply(base).validate_within(available).map_err(|why| SpaceError::OutOfDomain {
                    param: *param,
                    dist: dist.to_string(),
                    why,
                })?;
            }
        }
        Ok(())
    }

    /// `trials` draws from `seed`. Trial `i` draws from its own generator, the `i`-th fork of
    /// `Rng::new(seed)`, so the first trials of a longer search are those of a shorter one.
    pub fn sample(&self, trials: usize, seed: u64) -> Vec<Trial> {
        let mut master = Rng::new(seed);
        (0..trials)
            .map(|_| {
                let mut rng = master.fork();
                Trial { values: self.dims.iter().map(|(p, d)| (*p, d.sample(&mut rng))).collect() }
            })
            .collect()
    }
}

impl fmt::Display for SearchSpace {
    /// The expressions, separated by spaces: `lr=loguniform(0.001,0.3) dropout=uniform(0,0.4)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.dims.iter().map(|(p, d)| format!("{p}={d}")).collect();
        f.write_str(&parts.join(" "))
    }
}

/// One sampled point of a space.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub values: Vec<(Param, Value)>,
}

impl Trial {
    /// `base` with this trial's values. `base.hidden` holds the MLP's layers for a trial that
    /// does not choose them; a CNN gets none.
    pub fn apply(&self, base: &TrainConfig) -> TrainConfig {
        let mut config = base.clone();
        for (param, value) in &self.values {
            match (param, value) {
                (Param::Lr, Value::Float(x)) => config.lr = *x,
                (Param::WeightDecay, Value::Float(x)) => config.weight_decay = *x,
                (Param::Dropout, Value::Float(x)) => config.dropout = *x,
                (Param::Momentum, Value::Float(x)) => config.momentum = *x,
                (Param::BatchSize, Value::Int(n)) => config.batch_size = *n,
                (Param::Epochs, Value::Int(n)) => config.epochs = *n,
                (Param::Hidden, Value::Layers(sizes)) => config.hidden = sizes.clone(),
                (Param::Optimizer, Value::Optimizer(o)) => config.optimizer = *o,
                (Param::Model, Value::Model(m)) => config.model = *m,
                (param, value) => unreachable!("{param} cannot be {value:?}: the parser types values by parameter"),
            }
        }
        if config.model == Architecture::Cnn {
            config.hidden.clear();
        }
        config
    }

    /// The trial's value of `param`, if it varies it.
    pub fn get(&self, param: Param) -> Option<&Value> {
        self.values.iter().find(|(p, _)| *p == param).map(|(_, v)| v)
    }

    /// `lr=0.01235 bs=64`: what it varies; a CNN's trial does not show hidden layers.
    pub fn label(&self) -> String {
        let cnn = self.get(Param::Model) == Some(&Value::Model(Architecture::Cnn));
        let parts: Vec<String> = self
            .values
            .iter()
            .filter(|(param, _)| !(cnn && *param == Param::Hidden))
            .map(|(param, value)| format!("{}={value}", param.short_name()))
            .collect();
        parts.join(" ")
    }
}

/// Each trial's [`Trial::label`], unique: a trial that repeats an earlier one's values (a
/// discrete space can draw a point twice) gets its number from 1, `bs=64 #3`, so that runs
/// are told apart by name.
pub fn trial_labels(trials: &[Trial]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::with_capacity(trials.len());
    for (i, trial) in trials.iter().enumerate() {
        let label = trial.label();
        let label = if labels.contains(&label) { format!("{label} #{}", i + 1) } else { label };
        labels.push(label);
    }
    labels
}

fn json_arg(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(json_arg).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn parse_distribution(param: Param, dist: &str, args: &[String]) -> Result<Distribution, SpaceError> {
    let kind = param.kind();
    match dist.to_ascii_lowercase().as_str() {
        "choice" => {
            if args.is_empty() {
                return Err(SpaceError::EmptyChoice { param });
            }
            Ok(Distribution::Choice(args.iter().map(|a| parse_value(param, a)).collect::<Result<_, _>>()?))
        }
        name @ ("loguniform" | "uniform") => {
            let dist = if name == "loguniform" { "loguniform" } else { "uniform" };
            if kind != Kind::Float {
                return Err(SpaceError::WrongDistribution { param, dist });
            }
            let (low, high) = two(param, dist, args, |a| parse_float(param, a))?;
            check_order(param, low, high)?;
            if dist == "loguniform" {
                if low <= 0.0 {
                    return Err(SpaceError::LogNotPositive { param, low });
                }
                Ok(Distribution::LogUniform { low, high })
            } else {
                Ok(Distribution::Uniform { low, high })
            }
        }
        "int" => {
            if kind != Kind::Int {
                return Err(SpaceError::WrongDistribution { param, dist: "int" });
            }
            let (low, high) = two(param, "int", args, |a| parse_int(param, a))?;
            check_order(param, low, high)?;
            Ok(Distribution::Int { low, high })
        }
        _ => Err(SpaceError::UnknownDistribution { param, name: dist.to_string() }),
    }
}

fn two<T>(
    param: Param,
    dist: &'static str,
    args: &[String],
    parse: impl Fn(&str) -> Result<T, SpaceError>,
) -> Result<(T, T), SpaceError> {
    match args {
        [low, high] => Ok((parse(low)?, parse(high)?)),
        _ => Err(SpaceError::Arity { param, dist, got: args.len() }),
    }
}

fn check_order<T: PartialOrd + fmt::Display>(param: Param, low: T, high: T) -> Result<(), SpaceError> {
    if low > high {
        Err(SpaceError::Reversed { param, low: low.to_string(), high: high.to_string() })
    } else if low == high {
        Err(SpaceError::EmptyRange { param, value: low.to_string() })
    } else {
        Ok(())
    }
}

fn parse_float(param: Param, s: &str) -> Result<f64, SpaceError> {
    s.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| SpaceError::BadValue {
        param,
        value: s.to_string(),
        expected: "a finite number",
    })
}

fn parse_int(param: Param, s: &str) -> Result<usize, SpaceError> {
    s.parse::<usize>().map_err(|_| SpaceError::BadValue { param, value: s.to_string(), expected: "a whole number" })
}

fn parse_value(param: Param, s: &str) -> Result<Value, SpaceError> {
    let bad = |expected| SpaceError::BadValue { param, value: s.to_string(), expected };
    match param.kind() {
        Kind::Float => parse_float(param, s).map(Value::Float),
        Kind::Int => parse_int(param, s).map(Value::Int),
        Kind::Layers => s
            .split(',')
            .map(|part| part.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<_>>>()
            .map(Value::Layers)
            .ok_or_else(|| bad("layer sizes like 512,512")),
        Kind::Optimizer => OptimizerKind::from_name(s).map(Value::Optimizer).ok_or_else(|| bad("adam, adamw or sgd")),
        Kind::Model => Architecture::from_name(s).map(Value::Model).ok_or_else(|| bad("mlp or cnn")),
    }
}

/// Uniform in `[0, 1)` with 53 random bits, all of an `f64`'s precision.
fn unit_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `x` rounded to [`SIGNIFICANT_DIGITS`] (exact decimal formatting, the same everywhere) and
/// kept within `[low, high]`.
fn round_within(x: f64, low: f64, high: f64) -> f64 {
    let rounded: f64 = format!("{:.*e}", SIGNIFICANT_DIGITS - 1, x).parse().expect("a formatted float parses");
    rounded.clamp(low, high)
}

/// The natural logarithm of a positive finite `x` from exactly rounded operations only:
/// `x = m 2^e` with `m` in `[√½, √2)`, `ln m = 2 atanh((m-1)/(m+1))` by its series.
fn portable_ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    if x < f64::MIN_POSITIVE {
        return portable_ln(x * (1u64 << 54) as f64) - 54.0 * std::f64::consts::LN_2;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let (mut term, mut sum) = (s, 0.0);
    for k in 0..24 {
        sum += term / (2 * k + 1) as f64;
        term *= s2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// `e^y` from exactly rounded operations only: `y = k ln 2 + r` with `|r| <= ln 2 / 2`,
/// `e^r` by its Taylor series, times `2^k`.
fn portable_exp(y: f64) -> f64 {
    let k = (y / std::f64::consts::LN_2).round();
    let r = y - k * std::f64::consts::LN_2;
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 1..=24 {
        term *= r / n as f64;
        sum += term;
    }
    // 2^k in two halves, so that neither leaves the range of normal floats.
    let k = k as i64;
    let pow2 = |e: i64| f64::from_bits(((e + 1023).clamp(1, 2046) as u64) << 52);
    sum * pow2(k / 2) * pow2(k - k / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_ln_and_exp_agree_with_the_platform() {
        for x in [1e-300, 1e-12, 1e-3, 0.3, 1.0, 1.5, 2.0, 10.0, 1e12, 1e300, 5e-324] {
            let (ours, theirs) = (portable_ln(x), x.ln());
            assert!((ours - theirs).abs() <= 1e-13 * theirs.abs().max(1.0), "ln {x}: {ours} vs {theirs}");
        }
        for y in [-690.0, -20.0, -6.9, -1.0, 0.0, 0.5, 1.0, 20.0, 690.0] {
            let (ours, theirs) = (portable_exp(y), y.exp());
            assert!((ours - theirs).abs() <= 1e-13 * theirs, "exp {y}: {ours} vs {theirs}");
        }
    }

    #[test]
    fn rounding_keeps_four_significant_digits_within_the_range() {
        assert_eq!(round_within(0.0123456, 0.001, 0.3), 0.01235);
        assert_eq!(round_within(0.299996, 0.001, 0.3), 0.3);
        assert_eq!(round_within(0.0009999, 0.001, 0.3), 0.001);
    }
}

//! The actors the Python tests ask: every message shape a Rust type can take on the wire
//! (struct, newtype, tuple, unit, enum, `Option`, bytes, nested structs, maps), a handler
//! error, a panic, a slow handler, a counter for tells and priority, and a bounded mailbox.
//!
//! Every message derives [`JsonSchema`], so that `--export-schema` can describe them to the
//! Python stub generator.

use std::collections::BTreeMap;
use std::time::Duration;

use conclib::{Context, actor, message};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bytes that travel as MessagePack `bin` (through `serde_bytes`), not as an array of
/// integers as a plain `Vec<u8>` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bin(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl JsonSchema for Bin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bin".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // `x-conclib-bin` tells the stub generator to use `bytes`.
        schemars::json_schema!({
            "type": "string",
            "contentEncoding": "binary",
            "x-conclib-bin": true,
        })
    }
}

/// A point on a grid: a plain struct (a map of its field names on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Point {
    /// Column.
    pub x: i64,
    /// Row.
    pub y: i64,
}

/// Moves a point: a struct message with a nested struct, answered with a struct.
#[message(response = Point)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Move {
    /// Where from.
    pub point: Point,
    /// Columns to move by.
    pub dx: i64,
    /// Rows to move by.
    pub dy: i64,
}

/// Why an arithmetic message failed: the handler's own error (an enum with a unit and a
/// struct variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MathError {
    /// Division by zero.
    DivideByZero,
    /// The result does not fit an `i64`.
    Overflow {
        /// The left operand.
        a: i64,
        /// The right operand.
        b: i64,
    },
}

/// Doubles a number: a newtype message (its bare value on the wire).
#[message(response = i64, error = MathError)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Double(pub i64);

/// Divides `a` by `b`: fails with [`MathError`].
#[message(response = i64, error = MathError)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Divide {
    /// Dividend.
    pub a: i64,
    /// Divisor.
    pub b: i64,
}

/// Swaps a pair: a tuple message (an array on the wire), answered with a tuple.
#[message(response = (u32, String))]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Swap(pub String, pub u32);

/// Says hello: a unit message (an empty array on the wire; nil is accepted too).
#[message(response = String)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Hello;

/// A shape: an enum of unit, newtype, tuple and struct variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Shape {
    /// Nothing (a string on the wire).
    Empty,
    /// A square of this side (`{"Square": side}`).
    Square(u32),
    /// A segment between two points (`{"Segment": [a, b]}`).
    Segment(Point, Point),
    /// A rectangle (`{"Rect": {"width": .., "height": ..}}`).
    Rect {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
}

/// What [`Measure`] found: a struct with an optional field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Measured {
    /// The area.
    pub area: u64,
    /// The perimeter; none for a segment.
    pub perimeter: Option<u64>,
    /// The variant's name.
    pub kind: String,
}

/// Measures a shape: a newtype message holding an enum.
#[message(response = Measured)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Measure(pub Shape);

/// Changes the shapes actor's register: an enum message; answers the register.
#[message(response = i64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub enum Command {
    /// Back to zero.
    Reset,
    /// Set to a value.
    Set(i64),
    /// Add to it.
    Shift {
        /// How much.
        by: i64,
    },
}

/// A number's size class: a response enum of unit, newtype and struct variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Size {
    /// Zero.
    Zero,
    /// Below 100.
    Small(u64),
    /// 100 or more.
    Large {
        /// The number.
        value: u64,
        /// Its decimal digits.
        digits: u32,
    },
}

/// Classifies a number into a [`Size`].
#[message(response = Size)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Classify(pub u64);

/// Greets someone, or nobody: an optional field, answered with an optional string.
#[message(response = Option<String>)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Greet {
    /// Who; none answers none.
    pub name: Option<String>,
}

/// Reverses bytes that travel as MessagePack `bin` both ways.
#[message(response = Bin)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Reverse(pub Bin);

/// Sums bytes sent as a plain `Vec<u8>`: an array of integers on the wire.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Sum(pub Vec<u8>);

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Address {
    /// City.
    pub city: String,
    /// Postal code.
    pub zip: String,
}

/// A customer, with a nested address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    /// Name.
    pub name: String,
    /// Where to deliver.
    pub address: Address,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Line {
    /// Article.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// Why an order was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderError {
    /// No lines.
    Empty,
    /// Too many articles in all.
    TooMany {
        /// Articles ordered.
        qty: u64,
        /// The most allowed.
        limit: u64,
    },
}

/// The answer to [`PlaceOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    /// The customer, as sent.
    pub customer: Customer,
    /// Articles in all.
    pub total_qty: u64,
    /// The articles, in order.
    pub skus: Vec<String>,
    /// The note, as sent.
    pub note: Option<String>,
}

/// Places an order: nested structs, a list of structs, an optional field; fails with
/// [`OrderError`].
#[message(response = Receipt, error = OrderError)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer: Customer,
    /// What.
    pub lines: Vec<Line>,
    /// A note for the delivery.
    pub note: Option<String>,
}

/// Counts words: answered with a map.
#[message(response = BTreeMap<String, u32>)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Tally(pub Vec<String>);

/// Panics with this text.
#[message]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Explode(pub String);

/// Sleeps `ms` milliseconds, then answers them: a slow handler, for timeouts.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Nap {
    /// How long.
    pub ms: u64,
}

/// Answers nothing (`()`, nil on the wire).
#[message]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Noop;

/// Handled, but not exposed to other processes: the proxy answers `UnknownMessage`.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Internal;

/// Every message shape, stateless but for a register.
#[actor(urn = "py:shapes")]
#[derive(Default)]
pub struct Shapes {
    register: i64,
}

#[actor]
impl Shapes {
    /// Moves the point.
    #[handle(remote)]
    fn mv(&mut self, m: Move) -> Point {
        Point {
            x: m.point.x + m.dx,
            y: m.point.y + m.dy,
        }
    }

    /// Doubles, or fails with `Overflow`.
    #[handle(remote)]
    fn double(&mut self, Double(n): Double) -> Result<i64, MathError> {
        n.checked_mul(2).ok_or(MathError::Overflow { a: n, b: 2 })
    }

    /// Divides, or fails.
    #[handle(remote)]
    fn divide(&mut self, Divide { a, b }: Divide) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivideByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow { a, b })
    }

    /// Swaps the pair.
    #[handle(remote)]
    fn swap(&mut self, Swap(s, n): Swap) -> (u32, String) {
        (n, s)
    }

    /// Says hello.
    #[handle(remote)]
    fn hello(&mut self, _: Hello) -> String {
        "hello".to_owned()
    }

    /// Measures the shape.
    #[handle(remote)]
    fn measure(&mut self, Measure(shape): Measure) -> Measured {
        let (area, perimeter, kind) = match shape {
            Shape::Empty => (0, Some(0), "Empty"),
            Shape::Square(side) => {
                let side = u64::from(side);
                (side * side, Some(4 * side), "Square")
            }
            Shape::Segment(..) => (0, None, "Segment"),
            Shape::Rect { width, height } => {
                let (w, h) = (u64::from(width), u64::from(height));
                (w * h, Some(2 * (w + h)), "Rect")
            }
        };
        Measured {
            area,
            perimeter,
            kind: kind.to_owned(),
        }
    }

    /// Applies the command to the register.
    #[handle(remote)]
    fn command(&mut self, command: Command) -> i64 {
        match command {
            Command::Reset => self.register = 0,
            Command::Set(v) => self.register = v,
            Command::Shift { by } => self.register = self.register.saturating_add(by),
        }
        self.register
    }

    /// Classifies the number.
    #[handle(remote)]
    fn classify(&mut self, Classify(n): Classify) -> Size {
        match n {
            0 => Size::Zero,
            1..100 => Size::Small(n),
            _ => Size::Large {
                value: n,
                digits: n.to_string().len() as u32,
            },
        }
    }

    /// Greets.
    #[handle(remote)]
    fn greet(&mut self, Greet { name }: Greet) -> Option<String> {
        name.map(|n| format!("hello, {n}"))
    }

    /// Reverses the bytes.
    #[handle(remote)]
    fn reverse(&mut self, Reverse(Bin(mut bytes)): Reverse) -> Bin {
        bytes.reverse();
        Bin(bytes)
    }

    /// Sums the bytes.
    #[handle(remote)]
    fn sum(&mut self, Sum(bytes): Sum) -> u64 {
        bytes.iter().map(|&b| u64::from(b)).sum()
    }

    /// Places the order (at most 100 articles).
    #[handle(remote)]
    fn place_order(&mut self, order: PlaceOrder) -> Result<Receipt, OrderError> {
        if order.lines.is_empty() {
            return Err(OrderError::Empty);
        }
        let total_qty: u64 = order.lines.iter().map(|l| u64::from(l.qty)).sum();
        if total_qty > 100 {
            return Err(OrderError::TooMany {
                qty: total_qty,
                limit: 100,
            });
        }
        Ok(Receipt {
            customer: order.customer,
            total_qty,
            skus: order.lines.into_iter().map(|l| l.sku).collect(),
            note: order.note,
        })
    }

    /// Counts the words.
    #[handle(remote)]
    fn tally(&mut self, Tally(words): Tally) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        for word in words {
            *counts.entry(word).or_insert(0) += 1;
        }
        counts
    }

    /// Panics.
    #[handle(remote)]
    fn explode(&mut self, Explode(text): Explode) {
        panic!("{text}");
    }

    /// Sleeps, then answers.
    #[handle(remote)]
    async fn nap(&mut self, Nap { ms }: Nap) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Does nothing.
    #[handle(remote)]
    fn noop(&mut self, _: Noop) {}

    /// Not exposed.
    #[handle]
    fn internal(&mut self, _: Internal) -> u64 {
        42
    }
}

/// Adds `n` to the counter; fails with `"overflow"`.
#[message(response = u64, error = String)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Add {
    /// How much.
    pub n: u64,
}

/// Reads the counter.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Get;

/// Appends a value to the log (meant for tells).
#[message]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Record(pub u64);

/// The log of recorded values, in the order handled.
#[message(response = Vec<u64>)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct History;

/// Clears the counter and the log.
#[message]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Reset;

/// Holds the actor until its mailbox holds `n` messages or `max_ms` passed; answers how
/// many it saw queued. Lets a test queue messages behind a busy actor without sleeping.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HoldUntilQueued {
    /// Messages to wait for.
    pub n: u64,
    /// The longest wait.
    pub max_ms: u64,
}

/// A counter with a log: tells, priority lanes.
#[actor(urn = "py:counter")]
#[derive(Default)]
pub struct Counter {
    total: u64,
    log: Vec<u64>,
}

#[actor]
impl Counter {
    /// Adds.
    #[handle(remote)]
    fn add(&mut self, Add { n }: Add) -> Result<u64, String> {
        self.total = self.total.checked_add(n).ok_or("overflow")?;
        Ok(self.total)
    }

    /// Reads.
    #[handle(remote)]
    fn get(&mut self, _: Get) -> u64 {
        self.total
    }

    /// Records.
    #[handle(remote)]
    fn record(&mut self, Record(v): Record) {
        self.log.push(v);
    }

    /// The log.
    #[handle(remote)]
    fn history(&mut self, _: History) -> Vec<u64> {
        self.log.clone()
    }

    /// Clears.
    #[handle(remote)]
    fn reset(&mut self, _: Reset) {
        self.total = 0;
        self.log.clear();
    }

    /// Holds until enough is queued.
    #[handle(remote)]
    async fn hold_until_queued(
        &mut self,
        HoldUntilQueued { n, max_ms }: HoldUntilQueued,
        ctx: &mut Context<Self>,
    ) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(max_ms);
        loop {
            let queued = ctx.myself().mailbox_len() as u64;
            if queued >= n || tokio::time::Instant::now() >= deadline {
                return queued;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Keeps the actor busy for `ms` milliseconds.
#[message(response = u64)]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Occupy {
    /// How long.
    pub ms: u64,
}

/// An actor with a mailbox of one: a second queued request finds it full.
#[actor(urn = "py:narrow", mailbox = 1)]
#[derive(Default)]
pub struct Narrow;

#[actor]
impl Narrow {
    /// Busy for a while.
    #[handle(remote)]
    async fn occupy(&mut self, Occupy { ms }: Occupy) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

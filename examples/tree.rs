//! A tree of one actor type: every `Dir` spawns a child `Dir` per subdirectory, from its
//! `on_start`, and a question to the root walks the whole tree.
//!
//! `cargo run -p conclib-examples --example tree`

use conclib::{ActorSystem, Context, SpawnError, actor, message};
use std::time::Duration;

/// How many directories are at and below this one.
#[message(response = usize)]
struct CountDirs;

#[actor]
struct Dir {
    name: String,
    depth: u32,
    fan_out: u32,
}

#[actor]
impl Dir {
    #[on_start]
    async fn start(&mut self, ctx: &mut Context<Self>) -> Result<(), SpawnError> {
        if self.depth > 0 {
            for i in 0..self.fan_out {
                ctx.spawn_child(Dir {
                    name: format!("{}/{i}", self.name),
                    depth: self.depth - 1,
                    fan_out: self.fan_out,
                })
                .await?;
            }
        }
        Ok(())
    }

    #[handle]
    async fn count(&mut self, _: CountDirs, ctx: &mut Context<Self>) -> usize {
        let mut total = 1;
        for child in ctx.children() {
            total += child.ask(CountDirs).await.unwrap_or(0);
        }
        total
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let system = ActorSystem::new("tree");
    let root = system
        .spawn(Dir {
            name: String::new(),
            depth: 3,
            fan_out: 3,
        })
        .await?;
    let dirs = root.ask(CountDirs).await?;
    println!("{dirs} directories, one actor each");
    assert_eq!(dirs, 1 + 3 + 9 + 27);
    system.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

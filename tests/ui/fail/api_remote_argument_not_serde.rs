use conclib::actor;

struct Point {
    x: i64,
}

#[actor]
struct Plotter(i64);

#[actor]
impl Plotter {
    #[handle(remote)]
    fn plot(&mut self, points: Vec<Point>) {
        self.0 += points.iter().map(|p| p.x).sum::<i64>();
    }
}

fn main() {}

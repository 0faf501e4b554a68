//! What event-granular agreement costs (`BENCHMARKS.md`): the large scenario shortened, run with
//! the standard observers, the time each observer hook of `RoomMeasures` takes measured around
//! it. Ignored by default (minutes of CPU); run with
//! `cargo test --release -p roomsim-engine --test measures_cost -- --ignored --nocapture`
//! (`ROOMSIM_COST_SCENARIO` names another scenario file).

use roomsim_engine::metrics::{invariants::Invariants, RoomMeasures};
use roomsim_engine::scenario::load_scenario;
use roomsim_engine::sim::event::SimEvent;
use roomsim_engine::sim::federation::ServerIdx;
use roomsim_engine::sim::log::LogWriter;
use roomsim_engine::sim::observe::{Findings, Observer, WorldView};
use roomsim_engine::sim::time::SimTime;
use roomsim_engine::sim::world::World;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Spent {
    windows: Duration,
    window_calls: u64,
    samples: Duration,
    events: Duration,
}

struct Timed(RoomMeasures, Arc<Mutex<Spent>>);

impl Observer for Timed {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        let s = Instant::now();
        self.0.on_event(t, node, event, view);
        self.1.lock().unwrap().events += s.elapsed();
    }
    fn on_window(&mut self, t: SimTime, changed: &[(String, Vec<ServerIdx>)], view: &mut dyn WorldView) {
        let s = Instant::now();
        self.0.on_window(t, changed, view);
        let mut spent = self.1.lock().unwrap();
        spent.windows += s.elapsed();
        spent.window_calls += 1;
    }
    fn on_sample(&mut self, t: SimTime, view: &mut dyn WorldView) {
        let s = Instant::now();
        self.0.on_sample(t, view);
        self.1.lock().unwrap().samples += s.elapsed();
    }
    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        self.0.finish(view, out);
    }
}

#[test]
#[ignore]
fn cost_of_event_granular_agreement() {
    let path = std::env::var("ROOMSIM_COST_SCENARIO").unwrap_or_else(|_| "/tmp/meas/large5.toml".into());
    let sc = load_scenario(std::path::Path::new(&path), &[]).unwrap();
    let spent = Arc::new(Mutex::new(Spent::default()));
    let observers: Vec<Box<dyn Observer>> =
        vec![Box::new(Timed(RoomMeasures::new(&sc), spent.clone())), Box::new(Invariants::new(&sc))];
    let started = Instant::now();
    let mut w = World::new(&sc, sc.seed, LogWriter::none(), observers);
    w.run();
    let r = w.finish(false).unwrap();
    let total = started.elapsed();
    let s = spent.lock().unwrap();
    println!(
        "{path}: run {:.2} s; RoomMeasures: windows {:.2} s over {} calls ({:.1} µs each), samples {:.2} s, events {:.2} s; {} events, {} deliveries",
        total.as_secs_f64(),
        s.windows.as_secs_f64(),
        s.window_calls,
        s.windows.as_secs_f64() * 1e6 / s.window_calls.max(1) as f64,
        s.samples.as_secs_f64(),
        s.events.as_secs_f64(),
        r.summary["events_created"],
        r.summary["deliveries"]
    );
}

//! The `g4q` command line: Gemma 4 checkpoints to verified, quantized releases.

fn main() {
    println!("g4q");
}

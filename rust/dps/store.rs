//! DPS state: each prompt's alpha (3x3) and posterior (3) as one 48-byte record, so that updating
//! a scattered set of prompts touches one or two cache lines per prompt, and the selection scores
//! in a column of their own, which top-k scans whole every step.

/// alpha[to * 3 + from] in 0..9, then the posterior in 9..12.
pub type Record = [f32; 12];

pub fn record(alpha: &[f32; 9], post: &[f32; 3]) -> Record {
    std::array::from_fn(|k| if k < 9 { alpha[k] } else { post[k - 9] })
}

#[derive(Clone, Debug)]
pub struct Store {
    pub records: Vec<Record>,
    pub score: Vec<f32>,
}

impl Store {
    pub fn filled(n: usize, alpha: [f32; 9], post: [f32; 3], score: f32) -> Self {
        Store {
            records: vec![record(&alpha, &post); n],
            score: vec![score; n],
        }
    }

    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn alpha_of(&self, i: usize) -> [f32; 9] {
        std::array::from_fn(|k| self.records[i][k])
    }

    pub fn post_of(&self, i: usize) -> [f32; 3] {
        std::array::from_fn(|k| self.records[i][9 + k])
    }

    pub fn set(&mut self, i: usize, alpha: &[f32; 9], post: &[f32; 3], score: f32) {
        self.records[i] = record(alpha, post);
        self.score[i] = score;
    }

    pub fn bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.score.capacity() * std::mem::size_of::<f32>()
    }
}

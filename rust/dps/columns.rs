//! DPS state in column layout (one array per matrix entry), so that the per-step update of
//! every prompt runs as a vectorised loop, split across threads.

/// alpha[to * 3 + from], the posterior and the selection score, one f32 array each.
#[derive(Clone, Debug)]
pub struct Columns {
    pub alpha: [Vec<f32>; 9],
    pub post: [Vec<f32>; 3],
    pub score: Vec<f32>,
}

impl Columns {
    pub fn filled(n: usize, alpha: [f32; 9], post: [f32; 3], score: f32) -> Self {
        Columns {
            alpha: alpha.map(|a| vec![a; n]),
            post: post.map(|p| vec![p; n]),
            score: vec![score; n],
        }
    }

    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn alpha_of(&self, i: usize) -> [f32; 9] {
        std::array::from_fn(|k| self.alpha[k][i])
    }

    pub fn post_of(&self, i: usize) -> [f32; 3] {
        std::array::from_fn(|k| self.post[k][i])
    }

    pub fn set(&mut self, i: usize, alpha: &[f32; 9], post: &[f32; 3], score: f32) {
        for (column, &a) in self.alpha.iter_mut().zip(alpha) {
            column[i] = a;
        }
        for (column, &p) in self.post.iter_mut().zip(post) {
            column[i] = p;
        }
        self.score[i] = score;
    }

    pub fn bytes(&self) -> usize {
        let floats: usize = self
            .alpha
            .iter()
            .chain(&self.post)
            .map(|c| c.capacity())
            .sum::<usize>()
            + self.score.capacity();
        floats * std::mem::size_of::<f32>()
    }

    pub fn view(&mut self) -> ColumnsMut<'_> {
        let mut alpha = self.alpha.iter_mut();
        let mut post = self.post.iter_mut();
        ColumnsMut {
            alpha: std::array::from_fn(|_| alpha.next().unwrap().as_mut_slice()),
            post: std::array::from_fn(|_| post.next().unwrap().as_mut_slice()),
            score: &mut self.score,
        }
    }
}

/// A mutable window on a range of prompts.
pub struct ColumnsMut<'a> {
    pub alpha: [&'a mut [f32]; 9],
    pub post: [&'a mut [f32]; 3],
    pub score: &'a mut [f32],
}

impl<'a> ColumnsMut<'a> {
    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn split_at(self, mid: usize) -> (Self, Self) {
        fn halves<const K: usize>(
            cols: [&mut [f32]; K],
            mid: usize,
        ) -> ([&mut [f32]; K], [&mut [f32]; K]) {
            let mut left = Vec::with_capacity(K);
            let mut right = Vec::with_capacity(K);
            for c in cols {
                let (l, r) = c.split_at_mut(mid);
                left.push(l);
                right.push(r);
            }
            (
                left.try_into().ok().unwrap(),
                right.try_into().ok().unwrap(),
            )
        }
        let (al, ar) = halves(self.alpha, mid);
        let (pl, pr) = halves(self.post, mid);
        let (sl, sr) = self.score.split_at_mut(mid);
        (
            ColumnsMut {
                alpha: al,
                post: pl,
                score: sl,
            },
            ColumnsMut {
                alpha: ar,
                post: pr,
                score: sr,
            },
        )
    }

    /// Apply `f` to pieces of at most `chunk` prompts, in parallel.
    pub fn for_each_chunk<F: Fn(ColumnsMut<'_>) + Sync>(self, chunk: usize, f: &F) {
        if self.len() <= chunk {
            f(self);
        } else {
            let mid = self.len() / 2;
            let (l, r) = self.split_at(mid);
            rayon::join(|| l.for_each_chunk(chunk, f), || r.for_each_chunk(chunk, f));
        }
    }
}

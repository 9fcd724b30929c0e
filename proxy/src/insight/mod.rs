//! Insight: per-statement latency, N+1 bursts, leaked transactions.
//! (Being implemented.)

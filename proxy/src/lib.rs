//! sqlmux

//! Following a host log file: tail with rotation (rename and copytruncate) and resume.

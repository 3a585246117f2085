"""The teacher's side: the student version (handout), the grader, its checks, the child runner,
the sandbox and the loop oracles. None of it goes into a student version."""

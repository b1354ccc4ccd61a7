"""Lightning callbacks of expconf: step timing and preemption handling."""

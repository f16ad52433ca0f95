"""Theory modules (Hessian effective rank, convergence predictions): a later issue."""

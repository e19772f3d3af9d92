"""Hot kernels: the variational JKO inner iteration (ours vs a naive transcription) and the exact ICNN log-det
(batched Hessians, closed form or torch.func, vs per-coordinate backward passes)."""

from wgfbench.bench import workloads as W

from . import SMALL


class VariationalInnerLoop:
    """10 inner iterations of the variational JKO (batch 1024, J2 = 3, J3 = 1), after one warm step."""

    params = ((2, 256) if SMALL else (2, 32, 256), ("ours", "naive"))
    param_names = ("dim", "implementation")
    timeout = 300

    def setup(self, dim, implementation):
        self.call = W.vjko_inner_workload(dim, iters=10, naive=implementation == "naive").setup()

    def time_inner_iterations(self, dim, implementation):
        self.call()


class ExactLogDet:
    """log det Hess psi of a DenseICNN (2 x 64, rank 5) at 256 points, value and parameter gradient."""

    params = ((32,) if SMALL else (2, 8, 32), W.LOGDET_IMPLS)
    param_names = ("dim", "implementation")
    timeout = 300

    def setup(self, dim, implementation):
        try:
            self.call = W.logdet_workload(dim, 256, impl=implementation, train=True).setup()
        except (ImportError, AttributeError) as err:  # a tree without wgfbench.densities / the ICNN
            raise NotImplementedError(str(err)) from err

    def time_logdet_value_and_grad(self, dim, implementation):
        self.call()

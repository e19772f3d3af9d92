"""Time and peak memory of one JKO step per registered method and dimension, and accuracy after a small budget."""

from wgfbench.bench import workloads as W
from wgfbench.methods.base import UnsupportedProblem
from wgfbench.registry import methods
from wgfbench.timing import measure

from . import DEVICE, SMALL

METHOD_NAMES = tuple(methods())
DIMS = (2, 16) if SMALL else (2, 16, 64)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _measure_cells():
    """Every (method, d) cell once: median over steps 2-4 of a fresh method (step 1 is the warm-up)."""
    cells = {}
    for method in METHOD_NAMES:
        for dim in DIMS:
            try:
                m = W.build_jko(method, dim, params={"device": DEVICE})
            except UnsupportedProblem as err:
                cells[method, dim] = str(err)
                continue
            t = measure(m.step, device=m.device, warmup=1, repeats=3, keep_results=True)
            cells[method, dim] = {
                "step": t.median,
                "train": _median([s.train_s for s in t.results]),
                "regen": _median([s.regen_s for s in t.results]),
                "peak_mem_mb": t.peak_mem_mb,
            }
    return cells


class JKOStep:
    """One JKO step of a fresh method on OU with the timing budget of ``workloads.TIMING_PARAMS``.

    Step 1 is the warm-up (excluded); steps 2-4 are timed with :func:`wgfbench.timing.measure` (CUDA
    events on GPU), and each reported value is their median. Training and particle regeneration are
    the method's own ``StepStats.train_s`` / ``regen_s``. All (method, d) cells are measured once in
    ``setup_cache`` (one process) and the ``track_`` benchmarks read them.
    """

    params = (METHOD_NAMES, DIMS)
    param_names = ("method", "dim")
    unit = "seconds"
    timeout = 1200

    def setup_cache(self):
        return _measure_cells()

    def setup(self, cells, method, dim):
        if isinstance(cells[method, dim], str):
            raise NotImplementedError(cells[method, dim])

    def track_step_seconds(self, cells, method, dim):
        return cells[method, dim]["step"]

    def track_train_seconds(self, cells, method, dim):
        return cells[method, dim]["train"]

    def track_regen_seconds(self, cells, method, dim):
        return cells[method, dim]["regen"]


class JKOStepGPUMemory:
    """torch.cuda.max_memory_allocated over the timed steps; CUDA only (WGFBENCH_BENCH_DEVICE=cuda). On the CPU
    the only per-process figure is the peak RSS, monotone over the cells, so host memory is JKOStepHostMemory's."""

    params = (METHOD_NAMES, DIMS)
    param_names = ("method", "dim")
    unit = "MB"
    timeout = 1200

    def setup_cache(self):
        # a non-None placeholder: asv passes no cache argument at all when setup_cache returns None
        return {"cpu": "GPU memory is tracked on CUDA only"} if DEVICE == "cpu" else _measure_cells()

    def setup(self, cells, method, dim):
        if "cpu" in cells:
            raise NotImplementedError(cells["cpu"])
        if isinstance(cells[method, dim], str):
            raise NotImplementedError(cells[method, dim])

    def track_peak_gpu_mem_mb(self, cells, method, dim):
        return cells[method, dim]["peak_mem_mb"]


class JKOStepHostMemory:
    """asv's own peak resident memory of a process running one JKO step (host memory only)."""

    params = (METHOD_NAMES, (2,) if SMALL else (2, 64))
    param_names = ("method", "dim")
    timeout = 600

    def setup(self, method, dim):
        try:
            self.method = W.build_jko(method, dim, params={"device": DEVICE})
        except UnsupportedProblem as err:
            raise NotImplementedError(str(err)) from err

    def peakmem_step(self, method, dim):
        self.method.step()


class AccuracyAfterBudget:
    """Errors after 3 JKO steps at a fixed small budget (``workloads.ACCURACY_PARAMS``), OU, seed 0.

    A change that makes a step faster but breaks the method shows up here as a jump in the error. All cells
    are computed once in ``setup_cache``.
    """

    params = (("variational_jko", "exact_jko"), (2,) if SMALL else (2, 8))
    param_names = ("method", "dim")
    unit = "SymKL or W2"
    timeout = 1200

    def setup_cache(self):
        return {
            (method, dim): W.accuracy_after_budget(method, dim) if method in methods() else None
            for method in self.params[0]
            for dim in self.params[1]
        }

    def setup(self, errors, method, dim):
        if errors[method, dim] is None:
            raise NotImplementedError(f"{method} not registered")

    def track_symkl_vs_exact_jko(self, errors, method, dim):
        return errors[method, dim]["symkl_vs_jko"]

    def track_bures_w2_vs_exact_jko(self, errors, method, dim):
        return errors[method, dim]["bures_w2_vs_jko"]

    def track_symkl_vs_pde(self, errors, method, dim):
        return errors[method, dim]["symkl_vs_pde"]

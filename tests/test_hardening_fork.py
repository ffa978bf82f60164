"""Regression test of issue 14 finding 4: a process forked after the parent predicted (libgomp's
thread pool does not survive fork) must compute, and give the parent's results, not hang."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import multiprocessing, sys
    import numpy as np
    import mobile_sam_c
    from mobile_sam_c import _C, random_weights

    mobile_sam_c.set_num_threads(2)  # the parent's pool: two threads
    sam = mobile_sam_c.sam_model_registry["vit_t"](checkpoint=random_weights.random_state_dict(_C.weight_spec(), seed=4))
    predictor = mobile_sam_c.SamPredictor(sam)
    image = np.random.default_rng(4).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    prompt = dict(point_coords=np.array([[20.0, 30.0], [60.0, 10.0]]), point_labels=np.array([1, 0]))

    def run(_):
        predictor.set_image(image)  # the encoder's kernels too, in the child
        masks, iou, low = predictor.predict(**prompt, as_numpy=True)
        return predictor.get_image_embedding(), iou, low

    parent = run(None)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        try:
            children = pool.map_async(run, range(2)).get(timeout=150)
        except multiprocessing.TimeoutError:
            print("HANG: the forked workers did not finish", flush=True)
            pool.terminate()
            sys.exit(3)
    for emb, iou, low in children:
        np.testing.assert_allclose(emb, parent[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(iou, parent[1], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(low, parent[2], rtol=1e-3, atol=1e-3)
    print("OK", flush=True)
""")


def test_fork_pool_after_predict_matches_parent():
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1")
    env.pop("OMP_NUM_THREADS", None)
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=420,
                           env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:  # the pool's own timeout did not even fire
        raise AssertionError(f"forked workers hung: {e}") from None
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])

# M/M/55 with an unbounded FIFO queue, 720 calls/h, 4-minute mean hold: 1,000,000 calls,
# measuring waits (the same model as examples/mm55-benchmark.toml run for 1M calls).
import random, sys, time
import simpy

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
LAM = 720 / 3600.0
MEAN = 240.0

def caller(env, agents, stats):
    t0 = env.now
    with agents.request() as req:
        yield req
        stats[0] += env.now - t0
        stats[1] += 1
        yield env.timeout(random.expovariate(1 / MEAN))

def source(env, agents, stats):
    for _ in range(N):
        yield env.timeout(random.expovariate(LAM))
        env.process(caller(env, agents, stats))

random.seed(1)
env = simpy.Environment()
agents = simpy.Resource(env, capacity=55)
stats = [0.0, 0]
start = time.perf_counter()
env.process(source(env, agents, stats))
env.run()
print(f"{N} calls in {time.perf_counter() - start:.2f} s; mean wait {stats[0] / stats[1]:.2f} s")

// Times Stan's log-density gradient of one model on one data set, without a sampler or writers.
// The model's C++ (stanc output) is compiled in with -include; see bench/gradient.py.
//   harness DATA.json REPS BLOCKS SEED
// prints one line: number of parameters, log density and squared gradient norm at the point (so two
// programs of the same model can be checked to agree), and the fastest / median block in ms per gradient.
#include <stan/io/json/json_data.hpp>
#include <stan/model/log_prob_grad.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: harness DATA.json REPS BLOCKS SEED\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  stan::json::json_data data(in);
  const int reps = std::atoi(argv[2]);
  const int blocks = std::atoi(argv[3]);
  const unsigned seed = std::atoi(argv[4]);
  stan::model::model_base& model = new_model(data, seed, &std::cerr);
  // Stan's default initialization: uniform(-1, 1) here (a narrower box keeps exp() of theta tame).
  std::vector<double> params(model.num_params_r());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unif(-1.0, 1.0);
  for (double& p : params) p = unif(rng);
  std::vector<int> params_i;
  std::vector<double> grad;
  double lp = 0;
  for (int r = 0; r < 5; ++r) lp = stan::model::log_prob_grad<true, true>(model, params, params_i, grad);
  std::vector<double> block_ms;
  for (int b = 0; b < blocks; ++b) {
    auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) lp = stan::model::log_prob_grad<true, true>(model, params, params_i, grad);
    auto stop = std::chrono::steady_clock::now();
    block_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count() / reps);
  }
  std::sort(block_ms.begin(), block_ms.end());
  double norm2 = 0;
  for (double g : grad) norm2 += g * g;
  std::printf("%zu %.10g %.10g %.6f %.6f\n", params.size(), lp, norm2, block_ms.front(), block_ms[blocks / 2]);
  return 0;
}

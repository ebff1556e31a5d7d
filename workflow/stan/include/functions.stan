  // Functions shared by the three MIMIX programs (included in their `functions` block).
  //
  // The N x K layer (theta and its prior) costs almost all of a gradient, so its functions are
  // written with whole-matrix operations that stanc's --O1 keeps as "struct of arrays" matrices
  // (one autodiff node per matrix instead of one per cell; stanc --debug-mem-patterns lists them):
  // no single-cell assignment, no columns_dot_self / rep_matrix / append_row of parameters, which
  // would turn every matrix they touch back into N x K separate nodes.

  // sum_i log Multinomial(Y[i] | softmax(theta[i]')) up to the multinomial coefficients:
  //   sum_i [y_i' theta_i - m_i log sum_k exp(theta_ik)],  m_i = sum_k y_ik,
  // with y' theta over the nonzero counts only (y_nz at column-major positions nz_idx of theta;
  // most cells of microbiome counts are zero). log sum_k exp is taken without the usual shift by
  // the row maximum (one matrix exp and one matrix-vector product instead of N log_sum_exp calls):
  // exp overflows only for theta_ik > 709 and underflows only when a whole row is below -745, far
  // outside any posterior (the factor models pin one cell per row at 0); a warmup proposal that
  // gets there has log density -inf or NaN and is rejected like any other numerical failure.
  real multinomial_logit_rows(matrix theta, vector y_nz, array[] int nz_idx, vector depth) {
    return dot_product(y_nz, to_vector(theta)[nz_idx])
           - dot_product(depth, log(exp(theta) * rep_vector(1, cols(theta))));
  }

  // sum_k log N(e[:, k] - mu_k | 0, sigma2_k) up to -0.5 log(2 pi) per cell, with mu taken out of
  // the square analytically (sum_i (e_ik - mu_k)^2 = sum_i e_ik^2 - 2 mu_k sum_i e_ik + N mu_k^2)
  // so that no N x K matrix e - 1 mu' is formed.
  real normal_columns_lpdf(matrix e, vector mu, vector sigma2) {
    int N = rows(e);
    vector[rows(sigma2)] w = inv(sigma2);
    return -0.5 * (sum(square(e) * w) - 2 * dot_product(rep_row_vector(1, N) * e, w .* mu)
                   + N * dot_product(w, square(mu)))
           - 0.5 * N * sum(log(sigma2));
  }

  // sum_i log of the integral over c_i of prod_k N(e_ik - mu_k + c_i | 0, sigma2_k): the normal
  // density of each row of resid = e - 1 mu' with the row's level c_i integrated out, up to a
  // constant:
  //   -0.5 [sum_k w_k r_ik^2 - (sum_k w_k r_ik)^2 / W] - 0.5 log W - 0.5 sum_k log sigma2_k,
  //   r = resid, w = 1 / sigma2, W = sum_k w_k,
  // with mu taken out of the squares analytically as in normal_columns_lpdf.
  real normal_rows_level_free_lpdf(matrix e, vector mu, vector sigma2) {
    int N = rows(e);
    vector[rows(sigma2)] w = inv(sigma2);
    real W = sum(w);
    real sum_sq = sum(square(e) * w) - 2 * dot_product(rep_row_vector(1, N) * e, w .* mu)
                  + N * dot_product(w, square(mu));
    vector[N] row_w = e * w - dot_product(mu, w);  // sum_k w_k r_ik
    return -0.5 * sum_sq + 0.5 * dot_self(row_w) / W - 0.5 * N * (sum(log(sigma2)) + log(W));
  }

  // 2^P x P matrix of 0/1 inclusion patterns; row s is the binary expansion of s - 1.
  matrix inclusion_patterns(int P, int S) {
    matrix[S, P] pat;
    for (s in 1:S) {
      int rest = s - 1;
      for (j in 1:P) {
        pat[s, j] = rest % 2;
        rest = rest %/% 2;
      }
    }
    return pat;
  }

  // Log weight, up to a constant shared by all patterns, of each inclusion pattern s (rows) for C
  // Gaussian regressions (columns) r_c = X_s b_s + e_c, e_c ~ N(0, v_c I), b_s ~ N(0, diag(sd_b[s])^2),
  // with b_s integrated out:
  //   w[s, c] = log p(s | pi) + 0.5 u' B^{-1} u - 0.5 log det B,
  //   B = I + M_s / v_c,  M_s = D X_s'X_s D,  u = D X_s' r_c / v_c,  D = diag(sd_b[s]).
  // One eigendecomposition M_s = V diag(lambda) V' per pattern makes each regression O(P^2).
  matrix pattern_log_weights(matrix XtX, matrix XtR, vector v, vector sd_b, matrix pat,
                             array[,] int pat_cols, array[] int pat_size, vector log_pi,
                             vector log1m_pi) {
    int S = rows(pat);
    int C = cols(XtR);
    matrix[S, C] w;
    row_vector[C] inv_v = (1 ./ v)';
    for (s in 1:S) {
      real lp_s = pat[s] * log_pi + (1 - pat[s]) * log1m_pi;
      int n = pat_size[s];
      if (n == 0) {
        w[s] = rep_row_vector(lp_s, C);
      } else {
        array[n] int idx = pat_cols[s, 1:n];
        vector[n] d = sd_b[idx];
        // M_s, made exactly symmetric: d_i X_ij d_j and d_j X_ji d_i can differ in the last bit,
        // which eigendecompose_sym rejects once the slab variances are large (early warmup)
        matrix[n, n] M_s = symmetrize_from_lower_tri(quad_form_diag(XtX[idx, idx], d));
        tuple(matrix[n, n], vector[n]) ev = eigendecompose_sym(M_s);
        matrix[n, C] z = ev.1' * diag_pre_multiply(d, XtR[idx, :]);  // V' D X_s'r_c
        matrix[n, C] g = ev.2 * inv_v;  // lambda_j / v_c
        w[s] = lp_s + 0.5 * columns_dot_product(z, z ./ (1 + g)) .* square(inv_v)
               - 0.5 * rep_row_vector(1, n) * log1p(g);
      }
    }
    return w;
  }

  // Draw b_s from its Gaussian conditional given pattern s (columns idx) for one regression:
  // e = b_s ./ d ~ N(B^{-1} u, B^{-1}) with B and u as in pattern_log_weights.
  vector slab_rng(matrix XtX, vector xtr, real v, vector sd_b, array[] int idx) {
    int n = size(idx);
    vector[n] d = sd_b[idx];
    tuple(matrix[n, n], vector[n]) ev
      = eigendecompose_sym(symmetrize_from_lower_tri(quad_form_diag(XtX[idx, idx], d)));
    vector[n] prec = 1 + ev.2 / v;  // eigenvalues of B
    vector[n] proj = ev.1' * (d .* xtr[idx] / v);  // V' u
    vector[n] e = ev.1 * (proj ./ prec + to_vector(normal_rng(rep_vector(0, n), 1)) ./ sqrt(prec));
    return d .* e;
  }

  // Effects gamma (R x C) of the blocking levels from their hierarchically centred means h:
  // a nested level is centred on its parent's mean, a first-factor level on root, others on 0:
  //   gamma = h - parent_of h - first_level root,
  // parent_of[r, r'] = 1 when level r' contains level r, first_level[r] = 1 for a level of the
  // first blocking factor that has no parent. The map h -> gamma is unit-triangular (Jacobian 1).
  matrix level_effects(matrix h, row_vector root, matrix parent_of, vector first_level) {
    return h - parent_of * h - first_level * root;
  }

  // theta from mimix_nofactor's sampler coordinates: theta = theta_raw where nc = 0, and the
  // partially non-centred map theta = prior_mean + scale_k theta_raw where nc = 1
  // (scale_k = sigma_k^NC_POWER; whole-matrix expression, so theta stays one autodiff node)
  matrix theta_from_raw(matrix theta_raw, matrix nc, matrix prior_mean, vector scale) {
    return theta_raw + nc .* (prior_mean + theta_raw .* (rep_vector(1, rows(nc)) * (scale - 1)'));
  }

  // 1 for the zero-count cells of taxa seen in fewer than prevalence * N of the N samples, else 0
  // (N x K; data only). mimix.density.noncentred_cells is the same mask in NumPy.
  matrix rare_zero_cells(array[,] int Y, real prevalence) {
    int N = size(Y);
    int K = size(Y[1]);
    matrix[N, K] nc = rep_matrix(0, N, K);
    for (k in 1:K) {
      int seen = 0;
      for (i in 1:N) {
        seen += Y[i, k] > 0;
      }
      if (seen < prevalence * N) {
        for (i in 1:N) {
          nc[i, k] = Y[i, k] == 0;
        }
      }
    }
    return nc;
  }

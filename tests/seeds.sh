#!/usr/bin/env bash
# Issue #21: no test depends on its seed. Runs the tests that draw random values (they take the `test_seed`
# fixture of tests/conftest.py) once per seed, INTENTLOOP_TEST_SEED=0..19 (or the seeds given as arguments),
# and prints one line per seed: passed/failed counts and the failing tests. Exit status 1 if any seed failed.
#   bash tests/seeds.sh            # seeds 0..19
#   bash tests/seeds.sh 3 7        # only seeds 3 and 7
# Run it from anywhere; it uses the python on PATH (activate the venv first). Each seed is one pytest process,
# single-process (-p no:xdist) and niced, so it never starves other work on the machine.
set -u
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"
TESTS=(
  tests/test_agent.py::test_oracle_and_scripted_skills_solve_each_family
  tests/test_agent.py::test_invalid_intents_are_rejected_recorded_fed_back_and_never_executed
  tests/test_agent.py::test_outcome_of_a_valid_intent_and_done_ends_the_episode
  tests/test_agent.py::test_failed_intent_reports_timeout_within_the_step_budget
  tests/test_agent.py::test_oracle_repicks_a_block_that_is_not_in_hand
  tests/test_agent.py::test_planner_sees_image_and_instruction
  tests/test_agent.py::test_metrics_count_chain_length_in_order
  tests/test_agent.py::test_exploration_at_the_default_epsilon_swaps_that_share_of_intents_for_valid_others_and_keeps_done
  tests/test_contracts.py::test_each_rule_rejects_its_red_team_situation_by_name
  tests/test_contracts.py::test_a_block_is_never_placed_on_itself
  tests/test_contracts.py::test_red_team_subset_is_fully_rejected_and_valid_intents_pass
  tests/test_contracts.py::test_red_team_on_pybullet
  tests/test_contracts.py::test_oracle_intents_are_never_rejected
  tests/test_contracts.py::test_rejected_intent_is_never_executed_and_is_fed_back
  tests/test_contracts.py::test_forbidden_pattern_from_the_config_rejects
  tests/test_contracts.py::test_detector_verdicts_and_ground_truth_round_trip_through_the_store
  tests/test_envs.py::test_tabletop_observation_contents
  tests/test_envs.py::test_get_state_then_set_state_replays_exactly
  tests/test_envs.py::test_action_moves_the_end_effector
  tests/test_envs.py::test_skill_env_reward_is_the_sum_of_logged_terms
  tests/test_envs.py::test_a_skill_episode_ends_when_the_scripted_skill_succeeds_with_the_success_reward
  tests/test_envs.py::test_place_env_starts_with_the_block_in_hand
  tests/test_envs.py::test_sparse_reward_is_zero_until_success
  tests/test_envs.py::test_heldout_skill_env_samples_only_heldout_goals
  tests/test_envs.py::test_backends_agree_on_task_layout_spaces_and_judgement
  tests/test_goals.py::test_goal_tasks_name_no_intents_and_start_unmet
  tests/test_goals.py::test_arranged_scenes_vary_and_start_stacked_in_the_simulator
  tests/test_goals.py::test_oracle_and_scripted_skills_reach_every_goal
  tests/test_goals.py::test_the_goal_is_judged_on_the_state_not_on_the_intents
  tests/test_goals.py::test_chain_final_success_counts_a_subgoal_undone_afterwards
  tests/test_goals.py::test_text_baseline_reads_templated_chains_and_never_needs_the_image
  tests/test_goals.py::test_a_correction_changes_the_goal_and_reaches_the_planner
  tests/test_goals.py::test_a_perturbation_moves_the_block_and_the_oracle_redoes_the_step
  tests/test_goals.py::test_blank_image_ablation_zeroes_only_what_the_planner_sees
  tests/test_goals.py::test_the_text_baseline_never_reads_privileged_state
  tests/test_pybullet_sim.py::test_two_worlds_in_one_process_are_independent
  tests/test_pybullet_sim.py::test_blocks_report_unit_wxyz_quaternions
  tests/test_pybullet_sim.py::test_robot_holds_its_targets_against_gravity
  tests/test_pybullet_sim.py::test_render_is_an_rgb_image_of_the_scene
  tests/test_pybullet_sim.py::test_scripted_oracle_solves_a_put_task
  tests/test_reflection.py::test_a_clean_success_gives_success_examples_with_the_images_the_planner_saw
  tests/test_reflection.py::test_a_wrong_intent_is_the_planners_fault_and_the_oracle_correction_is_kept_on_the_train_split
  tests/test_reflection.py::test_a_needed_intent_not_achieved_is_the_skills_fault_and_is_routed_to_skill_data
  tests/test_reflection.py::test_hindsight_relabels_what_a_failed_episode_did_achieve
  tests/test_reflection.py::test_the_steps_of_a_failed_episode_that_advanced_its_task_keep_its_instruction
  tests/test_reflection.py::test_a_detector_that_disagrees_with_the_ground_truth_is_counted_as_a_false_positive
  tests/test_reflection.py::test_duplicates_are_dropped_and_the_composition_cap_balances
  tests/test_reflection.py::test_goal_episodes_are_judged_without_their_reference_plan_and_keep_the_users_words
  tests/test_skill_checkpoints.py::test_save_load_round_trip_gives_identical_greedy_actions
  tests/test_skill_checkpoints.py::test_legacy_pickled_checkpoint_loads_only_with_trust_and_converts
  tests/test_skill_checkpoints.py::test_shipped_skills_are_safetensors_and_json_only
  tests/test_skills_rllib.py::test_module_shapes_without_ray
  tests/test_skills_rllib.py::test_module_carries_its_input_normalisation
  tests/test_skills_rllib.py::test_shipped_skills_load_and_solve_a_put_task
  tests/test_tasks.py::test_train_tasks_use_only_train_compositions_and_heldout_tasks_contain_one
  tests/test_tasks.py::test_chains_are_feasible_sequences
  tests/test_tasks.py::test_phrasing_split_gives_unseen_templates
  tests/test_tasks.py::test_task_round_trips_through_dict
  tests/test_tasks.py::test_the_heldout_grammar_writes_words_training_never_sees_and_keeps_every_colour
  tests/test_vlm_planner.py::test_constrained_decoding_only_yields_parseable_intents_for_a_random_model
  tests/test_vlm_planner.py::test_only_objects_of_the_scene_are_named
  tests/test_vlm_planner.py::test_batched_planning_matches_one_at_a_time
  tests/test_vlm_planner.py::test_planner_reads_only_instruction_image_and_history
  tests/test_vlm_planner.py::test_another_architecture_with_a_bpe_tokenizer_loads_by_path_and_plans_valid_intents
  tests/test_vlm_planner.py::test_save_pretrained_round_trip_gives_identical_outputs
  tests/test_vlm_planner.py::test_record_and_replay_reproduce_an_episode_without_the_model
  tests/test_vlm_planner.py::test_examples_come_from_the_train_split_and_end_with_done
  tests/test_vlm_planner.py::test_a_caption_fraction_keeps_every_intent_example_and_that_share_of_cached_captions
  tests/test_vlm_planner.py::test_captions_describe_the_scene_the_image_shows
  tests/test_vlm_planner.py::test_scene_caption_reads_zones_stacks_and_orderings
  tests/test_vlm_planner.py::test_a_few_training_steps_lower_the_loss
  tests/test_vlm_planner.py::test_argument_noise_swaps_only_the_first_argument_into_seen_compositions
  tests/test_vlm_planner.py::test_garbled_instructions_keep_their_colours_and_words_and_differ_from_the_held_out_rules
  tests/test_vlm_planner.py::test_patch_positions_start_apart_and_zero_keeps_clips_start
)
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=($(seq 0 19))
log=$(mktemp -d)
bad=0
for s in "${seeds[@]}"; do
  INTENTLOOP_TEST_SEED=$s nice -n 19 python -m pytest -q -p no:xdist -p no:cacheprovider -rfE \
    "${TESTS[@]}" >"$log/seed$s.txt" 2>&1
  rc=$?
  summary=$(grep -E "^=* ?[0-9]+ (passed|failed).* in [0-9.]+s" "$log/seed$s.txt" | tail -1 | tr -d '=')
  passed=$(grep -oE "[0-9]+ passed" <<<"$summary" | cut -d' ' -f1)
  failed=$(grep -oE "[0-9]+ (failed|errors?)" <<<"$summary" | awk '{n += $1} END {print n + 0}')
  failing=$(grep -E "^(FAILED|ERROR) " "$log/seed$s.txt" | cut -d' ' -f2 | sed 's/^tests\///' | paste -sd' ')
  printf "seed %2d: %3s passed, %2s failed  %s\n" "$s" "${passed:-0}" "${failed:-0}" "$failing"
  [ $rc -ne 0 ] && bad=1 && [ -z "$summary" ] && echo "  pytest exited $rc without a summary: see $log/seed$s.txt"
done
echo "logs: $log"
exit $bad

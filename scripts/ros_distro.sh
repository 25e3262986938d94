# Sourced by setup.sh, lock.sh and test.sh: which ROS 2 wheels to install, DAP_LED_ROS_DISTRO=kilted
# (the default) or jazzy, and the venv and lock that go with them. The other requirements are the
# same for both: requirements.txt, whose ROS wheels (the lines starting with `ros-`) are Kilted's;
# for Jazzy those lines are replaced by requirements-jazzy.txt (the same packages, `ros-jazzy-*`).
ROS_DISTRO_NAME=${DAP_LED_ROS_DISTRO:-kilted}
case "$ROS_DISTRO_NAME" in
  kilted) VENV_DIR=.venv;       LOCK_FILE=requirements.lock ;;
  jazzy)  VENV_DIR=.venv-jazzy; LOCK_FILE=requirements-jazzy.lock ;;
  *) echo "DAP_LED_ROS_DISTRO=$ROS_DISTRO_NAME: expected kilted (default) or jazzy" >&2; exit 2 ;;
esac

# The loose requirements of this distribution, one per line, on stdout.
distro_requirements() {
  if [ "$ROS_DISTRO_NAME" = kilted ]; then
    cat requirements.txt
  else
    grep -v -E '^ros-' requirements.txt
    cat "requirements-$ROS_DISTRO_NAME.txt"
  fi
}

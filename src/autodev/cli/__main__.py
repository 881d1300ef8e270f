from autodev.cli.launch import main

main()

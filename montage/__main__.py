from montage.cli import console_main

console_main()

from numpyro_ext.demo.runner import main

main()
